import '../support/leakCheck.js';
import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type Browser, chromium } from 'playwright-core';
import { type RunningBoard, startBoard } from '../../src/board/board.js';
import { buildJobId } from '../../src/delivery/queue.js';
import { loadConfig } from '../../src/ops/config.js';
import { ConfigError } from '../../src/ops/errors.js';
import type { Logger } from '../../src/ops/logger.js';
import type { FixtureRepo } from '../support/fixtureRepo.js';
import type { TestSpace } from '../support/harness.js';
import { cleanProject, failingTest } from '../support/pythonProject.js';
import type { ReportCollector } from '../support/reportCollector.js';
import { createRunnerHarness, type RunnerHarness } from '../support/runnerHarness.js';

const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const USER = 'oncall';
const PASSWORD = 'correct horse battery staple';

describe('Bull Board for on-call, in a real browser', () => {
  let harness: RunnerHarness;
  let space: TestSpace;
  let reports: ReportCollector;
  let logger: Logger;
  let repo: FixtureRepo;
  let board: RunningBoard;
  let browser: Browser;

  before(async () => {
    harness = await createRunnerHarness('board', {
      BOARD_USERNAME: USER,
      BOARD_PASSWORD: PASSWORD,
      BOARD_PORT: '0',
      BUILD_ATTEMPTS: '1',
      CHECKOUT_TIMEOUT_SEC: '10',
    });
    ({ space, reports, logger } = harness);
    repo = await harness.newRepo('board');
    await harness.startBridge();
    await harness.startWorker();
    board = harness.track(await startBoard(space.config, logger));
    browser = await chromium.launch({
      executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
      args: CHROMIUM_FLAGS,
    });
  });

  after(async () => {
    await browser?.close();
    await harness?.close();
  });

  const announce = (sha: string) => harness.announce({ sha, repositoryUrl: repo.url });

  test('the board refuses to start without credentials unless bound to 127.0.0.1 with the opt-out', async () => {
    const open = loadConfig(
      { ...process.env, REDIS_URL: 'redis://127.0.0.1:1', BOARD_HOST: '0.0.0.0', BOARD_USERNAME: '' },
      '.',
      ['redis'],
    );
    await assert.rejects(
      startBoard(open, logger),
      (error: unknown) => error instanceof ConfigError && /BOARD_PASSWORD/.test(error.message),
    );
  });

  test('health and readiness answer without credentials and reveal nothing else', async () => {
    assert.equal((await fetch(`${board.url}/healthz`)).status, 200);
    const ready = await fetch(`${board.url}/readyz`);
    assert.deepEqual(await ready.json(), { ready: true, checks: { redis: true } });
    assert.equal((await fetch(`${board.url}/api/queues`)).status, 401);
  });

  test('a wrong password gets 401 and no page content', async () => {
    const context = await browser.newContext({ httpCredentials: { username: USER, password: 'wrong' } });
    const response = await context.request.get(`${board.url}/`);
    assert.equal(response.status(), 401);
    assert.equal((await response.text()).trim(), '', 'no page content');
    const page = await context.newPage();
    await assert.rejects(page.goto(board.url), /ERR_HTTP_RESPONSE_CODE_FAILURE|401/);
    await context.close();
  });

  test('the job list shows each build’s verdict at a glance: PASSED, FAILED and ERRORED', async () => {
    const listed = await harness.newRepo('board-list');
    const passed = await listed.commit(cleanProject(), 'clean for the list');
    const failed = await listed.commit(failingTest(), 'a failing test for the list');
    listed.push('main');
    const errored = 'f'.repeat(40);
    for (const sha of [passed, failed, errored]) await harness.announce({ sha, repositoryUrl: listed.url });
    assert.equal((await reports.waitFor(passed)).status, 'PASSED');
    assert.equal((await reports.waitFor(failed)).status, 'FAILED');
    assert.equal((await reports.waitFor(errored)).status, 'ERRORED');

    const context = await browser.newContext({ httpCredentials: { username: USER, password: PASSWORD } });
    const page = await context.newPage();
    const queue = `${board.url}/queue/${space.config.queueName}`;
    await page.goto(`${queue}?status=completed`);
    await page
      .getByText(`PASSED · main · ${passed.slice(0, 8)}`)
      .first()
      .waitFor({ timeout: 15_000 });
    await page
      .getByText(`FAILED · main · ${failed.slice(0, 8)}`)
      .first()
      .waitFor({ timeout: 15_000 });
    await page.goto(`${queue}?status=failed`);
    await page
      .getByText(`ERRORED · main · ${errored.slice(0, 8)}`)
      .first()
      .waitFor({ timeout: 15_000 });
    await page.screenshot({ path: resolve('test-results', 'board-verdicts.png'), fullPage: true });
    // The job page leads with what failed.
    const api = await context.request.get(
      `${board.url}/api/queues/${space.config.queueName}/${buildJobId(failed)}`,
    );
    const { job } = (await api.json()) as { job: { returnValue: Record<string, unknown> } };
    assert.deepEqual(Object.keys(job.returnValue).slice(0, 6), [
      'status',
      'error',
      'why each test failed',
      'failedTests',
      'flakyTests',
      'lintErrors',
    ]);
    // One readable line per failure: its id, kind, where and why.
    assert.deepEqual(job.returnValue['why each test failed'], [
      'tests/test_broken.py::test_add_is_wrong — failed at tests/test_broken.py:8: AssertionError: assert 4 == 5',
    ]);
    await context.close();
  });

  test('on-call logs in, reads a build’s stage logs, downloads its artefact, and retries a failed build', async () => {
    const built = await repo.commit(cleanProject(), 'clean');
    repo.push('main');
    const unpushed = await repo.commit({ 'LATE.txt': 'pushed late\n' }, 'not pushed yet');
    await announce(built);
    await announce(unpushed);
    assert.equal((await reports.waitFor(built)).status, 'PASSED');
    const errored = await reports.waitFor(unpushed);
    assert.equal(errored.status, 'ERRORED');

    const context = await browser.newContext({ httpCredentials: { username: USER, password: PASSWORD } });
    const page = await context.newPage();
    await page.goto(`${board.url}/queue/${space.config.queueName}/${buildJobId(built)}`);
    await page
      .getByRole('tab', { name: /logs/i })
      .or(page.getByText(/^logs$/i))
      .first()
      .click();
    await page
      .getByText(/stage test passed/)
      .first()
      .waitFor({ timeout: 15_000 });
    await page.screenshot({ path: resolve('test-results', 'board-job.png'), fullPage: true });

    const download = await context.request.get(`${board.url}/artefacts/${built}.tar.gz`);
    assert.equal(download.status(), 200);
    assert.deepEqual([...(await download.body()).subarray(0, 2)], [0x1f, 0x8b], 'a gzip file');
    const anonymous = await fetch(`${board.url}/artefacts/${built}.tar.gz`);
    assert.equal(anonymous.status, 401);

    repo.push('main');
    await page.goto(`${board.url}/queue/${space.config.queueName}/${buildJobId(unpushed)}`);
    await page
      .getByText(/UnrecoverableError: ERRORED: checkout: commit .* not on the server \(force-pushed away\?\)/)
      .waitFor({ timeout: 15_000 });
    // The failed job's card: its first action (the circular-arrows icon) is Retry.
    await page.getByText(buildJobId(unpushed), { exact: true }).locator('xpath=following::button[1]').click();
    const confirm = page.getByRole('button', { name: /^(confirm|retry|yes)$/i });
    if (
      await confirm
        .first()
        .isVisible({ timeout: 2_000 })
        .catch(() => false)
    )
      await confirm.first().click();
    const rebuilt = await reports.waitFor(unpushed, 120_000, 2);
    assert.equal(rebuilt.status, 'PASSED', rebuilt.error);
    await context.close();
  });
});
