// Reading a proxy's memory and CPU from /proc, and CPU seconds per 1,000 requests.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { cpuOverSpans, joinSpans } from '../../bench/machine.js';
import { cpuSecondsPer1k, joinGroupSpans, parsePssKb, parseStat, parseVmRssKb, rssMb, sampleGroups } from '../../bench/resources.js';

const STATUS = `Name:\tnode
Umask:\t0022
State:\tS (sleeping)
VmPeak:\t 1203456 kB
VmHWM:\t   70000 kB
VmRSS:\t   65432 kB
RssAnon:\t   40000 kB
Threads:\t7
`;

describe('proxy resources', () => {
  it('reads VmRSS in kB, and nothing for a process without one', () => {
    assert.equal(parseVmRssKb(STATUS), 65432);
    assert.equal(parseVmRssKb('Name:\tkthreadd\nState:\tS (sleeping)\n'), undefined);
  });

  it('reads the process group and utime + stime, whatever the command name holds', () => {
    // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime ...
    const stat = '4242 (node (a) b) S 1 4200 4200 0 -1 4194560 100 0 0 0 1234 567 9 9 20 0 7 0 100 1000 200\n';
    assert.deepEqual(parseStat(stat), { pgrp: 4200, cpuTicks: 1801 });
    assert.throws(() => parseStat('garbage'), /unreadable/);
  });

  it('turns CPU ticks into seconds per 1,000 requests', () => {
    const before = { processes: 2, rssKb: 10_000, pssKb: 5_000, cpuTicks: 1000 };
    const after = { processes: 2, rssKb: 12_000, pssKb: 6_000, cpuTicks: 1250 }; // 2.5 s of CPU
    assert.equal(cpuSecondsPer1k(before, after, 50_000), 0.05);
    assert.equal(cpuSecondsPer1k(before, after, 0), undefined);
    assert.equal(cpuSecondsPer1k(undefined, after, 10), undefined);
    assert.equal(cpuSecondsPer1k(before, { processes: 0, rssKb: 0, pssKb: 0, cpuTicks: 0 }, 10), undefined, 'the group is gone');
  });

  it('joins the samples around separate rounds as if they had run back to back', () => {
    const g = (cpuTicks: number, rssKb: number) => ({ processes: 1, rssKb, pssKb: rssKb / 2, cpuTicks });
    // Two rounds of 100 and 300 ticks; 5,000 ticks of other targets' rounds between them are not counted.
    const spans = [
      [g(1000, 10_000), g(1100, 11_000)],
      [g(6100, 11_000), g(6400, 12_000)],
    ] as const;
    assert.deepEqual(joinSpans(spans, ['cpuTicks']), [g(1000, 10_000), g(1400, 12_000)], 'memory as after the last round');
    assert.equal(cpuSecondsPer1k(...joinSpans(spans, ['cpuTicks'])!, 80_000), 0.05, "4 s over both rounds' 80,000 requests");
    assert.equal(joinSpans([[g(1, 1), undefined]], ['cpuTicks']), undefined, 'a missing sample');
    assert.equal(joinSpans([], ['cpuTicks']), undefined);
  });

  it('joins group samples per process group, leaving out a group that vanished', () => {
    const g = (cpuTicks: number) => ({ processes: 1, rssKb: 100, pssKb: 50, cpuTicks });
    const joined = joinGroupSpans([
      [
        new Map([
          [1, g(0)],
          [2, g(0)],
        ]),
        new Map([
          [1, g(10)],
          [2, g(20)],
        ]),
      ],
      [
        new Map([
          [1, g(50)],
          [2, g(70)],
        ]),
        new Map([
          [1, g(60)],
          [2, g(75)],
        ]),
      ],
      [
        new Map([[1, g(90)]]),
        new Map([
          [1, g(95)],
          [2, g(80)],
        ]),
      ],
    ])!;
    assert.deepEqual(joined.after.get(1), g(25));
    assert.equal(joined.after.has(2), false, 'group 2 was not sampled before the last round');
    assert.equal(joinGroupSpans([]), undefined);
  });

  it("gives CPU use in cores over the rounds' time only", () => {
    const c = (machine: number, ours: number, at: number) => ({ machine, ours, steal: 0, at });
    // 1 s each, 150 jiffies of the machine's of which 100 the bench's, per round; 10 s between the rounds.
    const usage = cpuOverSpans([
      [c(0, 0, 0), c(150, 100, 1000)],
      [c(5000, 1000, 11_000), c(5150, 1100, 12_000)],
    ]);
    assert.deepEqual(usage, { foreignCores: 0.5, benchCores: 1, stealCores: 0 });
  });

  it('reads Pss from smaps_rollup', () => {
    assert.equal(parsePssKb('55d0c000-7ffd [rollup]\nRss:               66736 kB\nPss:               27153 kB\nPss_Anon:          24000 kB\n'), 27153);
    assert.equal(parsePssKb('Rss: 1 kB\n'), undefined);
  });

  it('shows kB as MB of 1024 kB, one decimal', () => {
    assert.equal(rssMb(65432), 63.9);
    assert.equal(rssMb(61440), 60);
  });

  it('samples a live process group (this test process)', { skip: !existsSync('/proc/self/stat') }, () => {
    const { pgrp } = parseStat(readFileSync('/proc/self/stat', 'utf8'));
    const s = sampleGroups([pgrp, 999_999_999]);
    assert.ok(s);
    const mine = s.get(pgrp)!;
    assert.ok(mine.processes >= 1);
    assert.ok(mine.rssKb > 1000, `rss ${mine.rssKb} kB`);
    assert.deepEqual(s.get(999_999_999), { processes: 0, rssKb: 0, pssKb: 0, cpuTicks: 0 });
  });
});
