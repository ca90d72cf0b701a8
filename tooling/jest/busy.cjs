#!/usr/bin/env node
// `pnpm test:busy [turbo args]`: `pnpm test` on a machine that is busy, to prove the suite does not
// depend on being alone on it. One busy loop per core (BUSY_LOOPS to change that) spins for as long
// as the command runs; they are stopped however it ends, and each loop also stops by itself when
// this script is gone (even if SIGKILLed). Any other command works too:
//
//   pnpm test:busy                                   # the whole suite
//   pnpm test:busy --filter=@repo/user               # one package's tasks (arguments go to turbo)
//   node tooling/jest/busy.cjs pnpm --filter @repo/database exec jest test/embedded.test.ts
const { spawn } = require('node:child_process');
const os = require('node:os');

const argv = process.argv.slice(2);
const [command, ...args] = argv.length > 0 ? argv : ['pnpm', 'test'];
const count = Number(process.env.BUSY_LOOPS ?? os.availableParallelism?.() ?? os.cpus().length);

// Each loop checks now and then (every ~50 ms of spinning) that this script is still its parent.
const loop = `const parent = ${process.pid};
for (let i = 1; ; i++) if (i % 2e7 === 0 && process.ppid !== parent) process.exit(0);`;
const loops = Array.from({ length: count }, () =>
  spawn(process.execPath, ['-e', loop], { stdio: 'ignore' }),
);
const stopLoops = () => {
  for (const child of loops) if (child.exitCode === null) child.kill('SIGKILL');
};
process.on('exit', stopLoops);
process.stderr.write(
  `busy: ${count} busy loop(s) running while: ${[command, ...args].join(' ')}\n`,
);

const child = spawn(command, args, { stdio: 'inherit' });
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    stopLoops();
    child.kill(signal);
  });
}
child.on('error', (error) => {
  process.stderr.write(`busy: cannot run ${command}: ${error.message}\n`);
  process.exit(1);
});
child.on('exit', (code, signal) => {
  stopLoops();
  process.stderr.write(`busy: ${command} exited with ${code ?? signal}; busy loops stopped\n`);
  process.exit(code ?? 1);
});
