// Preloaded (`node --require`) into every app the runner starts. The runner holds the write end of
// the app's stdin; if the runner dies by any means (even SIGKILL, when it can clean nothing up), the
// pipe closes and the app shuts itself down gracefully instead of living on as an orphan.
process.stdin.on('end', () => process.kill(process.pid, 'SIGTERM'));
process.stdin.on('error', () => process.kill(process.pid, 'SIGTERM'));
process.stdin.resume();
