// rt_node: Node.js with worker threads, timers and a SharedArrayBuffer counted by every
// worker with Atomics; after the restore the workers must keep counting and the data
// built before the dump must be intact.
const { Worker, isMainThread, workerData } = require('worker_threads');
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');

if (!isMainThread) {
  const counters = new Int32Array(workerData.buffer);
  const spin = () => { Atomics.add(counters, workerData.index, 1); setTimeout(spin, 1); };
  spin();
  return;
}

const name = process.env.ZDTM_NAME || 'rt_node';
const token = crypto.randomBytes(8).toString('hex');
const data = new Map();
for (let i = 0; i < 20000; i++) data.set('k' + i, crypto.randomBytes(16).toString('hex'));
const digest = crypto.createHash('sha256').update(JSON.stringify([...data])).digest('hex');
const buffer = new SharedArrayBuffer(4 * 4);
const counters = new Int32Array(buffer);
const workers = [0, 1, 2, 3].map((index) => new Worker(__filename, { workerData: { buffer, index } }));
let ticks = 0;
setInterval(() => { ticks++; }, 5);

let term = false;
process.on('SIGTERM', () => { term = true; });

setTimeout(() => {
  const fd = Number(process.env.ZDTM_READY_FD);
  fs.writeSync(fd, `${process.pid} ${token}\n`);
  fs.closeSync(fd);
  const wait = setInterval(() => {
    if (!term) return;
    clearInterval(wait);
    const before = [...counters];
    const ticksBefore = ticks;
    setTimeout(() => {
      let problem = null;
      const hash = crypto.createHash('sha256').update(JSON.stringify([...data])).digest('hex');
      if (hash !== digest) problem = 'map contents changed';
      else if (ticks <= ticksBefore) problem = 'timers stopped';
      else {
        const stalled = [...counters].findIndex((value, i) => value <= before[i]);
        if (stalled >= 0) problem = `worker ${stalled} stopped counting`;
      }
      fs.writeFileSync(path.join(process.env.ZDTM_OUTDIR, name + '.out'),
        (problem ? 'FAIL: ' + problem : 'PASS') + '\ntoken ' + token + '\n');
      process.exit(problem ? 1 : 0);
    }, 500);
  }, 10);
}, 500);
