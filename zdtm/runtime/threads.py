"""rt_python: CPython 3 with threads. Worker threads fill dicts and keep counting (under
a lock and a condition variable); a queue carries work between them. After the restore
every thread must still advance and the data built before the dump must be intact."""
import hashlib, os, queue, random, signal, sys, threading, time

name = os.environ.get("ZDTM_NAME", "rt_python")
outdir = os.environ["ZDTM_OUTDIR"]
token = "%016x" % random.SystemRandom().getrandbits(64)
term = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: term.set())

data = {i: os.urandom(32).hex() for i in range(20000)}
digest = hashlib.sha256(repr(sorted(data.items())).encode()).hexdigest()
counters = [0] * 8
lock = threading.Lock()
work = queue.Queue()

def worker(index):
    local = random.Random(index)
    while True:
        item = work.get()
        if item is None:
            return
        with lock:
            counters[index] += item + local.randint(0, 0)
        work.task_done()

def feeder():
    # Feeds until the process exits (not until SIGTERM): the verdict, which runs after
    # SIGTERM, needs the workers to have work.
    while True:
        for _ in range(8):
            work.put(1)
        time.sleep(0.001)

threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(8)]
for t in threads:
    t.start()
feed = threading.Thread(target=feeder, daemon=True)
feed.start()
time.sleep(0.2)
tids = sorted(t.native_id for t in threads)

fd = int(os.environ["ZDTM_READY_FD"])
os.write(fd, ("%d %s\n" % (os.getpid(), token)).encode())
os.close(fd)

while not term.is_set():
    term.wait(0.05)

def verdict():
    if hashlib.sha256(repr(sorted(data.items())).encode()).hexdigest() != digest:
        return "dict contents changed"
    if sorted(t.native_id for t in threads) != tids:
        return "thread ids changed"
    before = sum(counters)
    time.sleep(0.3)
    after = sum(counters)
    if after <= before:
        return "worker threads stopped counting (%d -> %d)" % (before, after)
    if not all(t.is_alive() for t in threads):
        return "a worker thread died"
    return None

problem = verdict()
with open(os.path.join(outdir, name + ".out"), "w") as out:
    out.write(("FAIL: " + problem if problem else "PASS") + "\ntoken " + token + "\n")
print(name, problem or "PASS", file=sys.stderr)
os._exit(1 if problem else 0)
