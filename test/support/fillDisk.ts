// A fast test (Python lines, without imports: it needs `os` and `pytest`) writing `files` files of `mib` MiB into
// every place a build may write (its checkout, $TMPDIR, $HOME, $CI_RUNNER_KEEP), moving on from a place when a write
// is refused; `onRefused` are the lines run then (with `place`, `n` and `error` in scope), before moving on.
export function fillEveryWritablePlace(files: number, mib: number, onRefused: string[] = []): string[] {
  return [
    'PLACES = ["TMPDIR", "HOME", "CI_RUNNER_KEEP"]',
    '',
    '',
    '@pytest.mark.fast',
    'def test_fill_every_writable_place():',
    '    chunk = b"x" * (1 << 20)',
    '    for place in ["."] + [os.environ[name] for name in PLACES]:',
    `        for n in range(${files}):`,
    '            try:',
    '                with open(os.path.join(place, f"fill-{n}.bin"), "wb") as handle:',
    `                    for _ in range(${mib}):`,
    '                        handle.write(chunk)',
    // `error` only where it is used: the repository's lint (ruff F841) would flag it otherwise.
    onRefused.length ? '            except OSError as error:' : '            except OSError:',
    ...onRefused.map((line) => `                ${line}`),
    '                break',
  ];
}
