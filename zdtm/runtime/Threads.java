// rt_java: a HotSpot JVM with worker threads that count under a lock and through a
// blocking queue, plus a heap of random data; after the restore every thread must keep
// working and the data built before the dump must be intact.
import java.io.*;
import java.nio.file.*;
import java.security.*;
import java.util.*;
import java.util.concurrent.*;
import java.util.concurrent.atomic.*;

public class Threads {
    public static void main(String[] args) throws Exception {
        String name = System.getenv().getOrDefault("ZDTM_NAME", "rt_java");
        String outdir = System.getenv("ZDTM_OUTDIR");
        SecureRandom random = new SecureRandom();
        String token = String.format("%016x", random.nextLong());
        HashMap<Integer, String> data = new HashMap<>();
        for (int i = 0; i < 50000; i++) data.put(i, Long.toHexString(random.nextLong()));
        int digest = data.hashCode();
        AtomicLongArray counters = new AtomicLongArray(8);
        BlockingQueue<Integer> queue = new LinkedBlockingQueue<>();
        List<Thread> workers = new ArrayList<>();
        for (int i = 0; i < 8; i++) {
            final int index = i;
            Thread worker = new Thread(() -> {
                try {
                    while (true) { counters.addAndGet(index, queue.take()); }
                } catch (InterruptedException e) { }
            });
            worker.setDaemon(true);
            worker.start();
            workers.add(worker);
        }
        Thread feeder = new Thread(() -> {
            while (true) {
                for (int i = 0; i < 8; i++) queue.add(1);
                try { Thread.sleep(1); } catch (InterruptedException e) { return; }
            }
        });
        feeder.setDaemon(true);
        feeder.start();
        CountDownLatch term = new CountDownLatch(1);
        sun.misc.Signal.handle(new sun.misc.Signal("TERM"), signal -> term.countDown());
        Thread.sleep(500);
        long pid = ProcessHandle.current().pid();
        // The ready pipe is an inherited fd: write through /proc/self/fd.
        String fd = System.getenv("ZDTM_READY_FD");
        try (FileOutputStream ready = new FileOutputStream("/proc/self/fd/" + fd)) {
            ready.write((pid + " " + token + "\n").getBytes());
        }
        closeFd(Integer.parseInt(fd));
        term.await();
        String problem = null;
        if (data.hashCode() != digest) problem = "heap data changed";
        long before = 0, after = 0;
        for (int i = 0; i < 8; i++) before += counters.get(i);
        Thread.sleep(500);
        for (int i = 0; i < 8; i++) after += counters.get(i);
        if (problem == null && after <= before) problem = "worker threads stopped (" + before + " -> " + after + ")";
        for (Thread worker : workers) if (problem == null && !worker.isAlive()) problem = "a worker died";
        Files.writeString(Paths.get(outdir, name + ".out"), (problem == null ? "PASS" : "FAIL: " + problem) + "\ntoken " + token + "\n");
        Runtime.getRuntime().halt(problem == null ? 0 : 1);
    }

    // Java has no API to close a raw fd: wrap the inherited ready pipe's write end in a
    // FileDescriptor (private constructor, opened with --add-opens) and close that.
    static void closeFd(int fd) throws Exception {
        java.lang.reflect.Constructor<FileDescriptor> make = FileDescriptor.class.getDeclaredConstructor(int.class);
        make.setAccessible(true);
        new FileInputStream(make.newInstance(fd)).close();
    }
}
