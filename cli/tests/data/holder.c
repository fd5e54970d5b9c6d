/* A process that holds something a dump option decides about, tells the test it is
 * ready by writing its pid on fd 3 and closing it, then waits in pause() until SIGUSR1,
 * checks what it holds, writes PASS or FAIL to argv[1] and exits 0 or 1.
 *   holder OUT lock PATH       an exclusive flock on PATH (fd 5)
 *   holder OUT ghost PATH SIZE an unlinked file of SIZE bytes of a pattern (fd 5)
 *   holder OUT vfork           a vfork child that never execs: the parent stays in
 *                              uninterruptible sleep (it cannot stop for a tracer);
 *                              ready (fd 3 closed) only once it sleeps there
 *   holder OUT pipe            writes "hello from PID" into fd 5 (a pipe the test gives
 *                              it) on SIGUSR1
 *   holder OUT listen PORTFILE a TCP listener on 127.0.0.1 (fd 5) that accepts nothing
 *                              until SIGUSR1; its port goes to PORTFILE */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <sched.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static volatile sig_atomic_t check;
static void on_usr1(int sig) { (void)sig; check = 1; }

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    setsid();
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0); dup2(null, 1); dup2(null, 2); close(null);
    for (int fd = 4; fd < 1024; fd++)
        if (fd != 5 || strcmp(argv[2], "pipe")) close(fd);
    struct sigaction sa = { .sa_handler = on_usr1 };
    sigaction(SIGUSR1, &sa, NULL);
    long size = 0;
    if (!strcmp(argv[2], "lock")) {
        int fd = open(argv[3], O_RDWR | O_CREAT, 0600);
        if (fd < 0 || dup2(fd, 5) < 0 || close(fd) < 0 || flock(5, LOCK_EX) < 0) return 3;
    } else if (!strcmp(argv[2], "ghost")) {
        size = atol(argv[4]);
        int fd = open(argv[3], O_RDWR | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || dup2(fd, 5) < 0 || close(fd) < 0) return 3;
        char block[4096];
        for (long at = 0; at < size; at += sizeof block) {
            for (size_t i = 0; i < sizeof block; i++) block[i] = (char)((at + i) * 7 + 1);
            long n = size - at < (long)sizeof block ? size - at : (long)sizeof block;
            if (pwrite(5, block, n, at) != n) return 3;
        }
        unlink(argv[3]);
    } else if (!strcmp(argv[2], "listen")) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in address = { .sin_family = AF_INET };
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t length = sizeof address;
        if (fd < 0 || dup2(fd, 5) < 0 || close(fd) < 0 || bind(5, (struct sockaddr *)&address, sizeof address) < 0 || listen(5, 8) < 0
            || getsockname(5, (struct sockaddr *)&address, &length) < 0)
            return 3;
        FILE *port = fopen(argv[3], "w");
        fprintf(port, "%d\n", ntohs(address.sin_port));
        fclose(port);
    } else if (!strcmp(argv[2], "vfork")) {
        dprintf(3, "%d\n", getpid());
        /* vfork's clone, with the fd table shared too: the child closes fd 3 (the
         * test's "ready") only once the parent waits for it, uninterruptibly. The child
         * shares the parent's memory: only raw syscalls here (the parent never runs
         * again until the test kills the child). */
        long flags = CLONE_VM | CLONE_VFORK | CLONE_FILES | SIGCHLD;
#if defined(__s390x__)
        long child = syscall(SYS_clone, 0L, flags, 0L, 0L, 0L);
#else
        long child = syscall(SYS_clone, flags, 0L, 0L, 0L, 0L);
#endif
        if (child == 0) {
            syscall(SYS_close, 3);
            for (;;) syscall(SYS_pause);
        }
        return 0;
    }
    dprintf(3, "%d\n", getpid());
    close(3);
    while (!check) pause();
    int ok = 1;
    if (!strcmp(argv[2], "lock")) {
        /* The lock is ours again: another description of the file cannot take it. */
        int other = open(argv[3], O_RDWR);
        ok = other >= 0 && flock(other, LOCK_EX | LOCK_NB) < 0;
    } else if (!strcmp(argv[2], "listen")) {
        ok = accept(5, NULL, NULL) >= 0;
    } else if (!strcmp(argv[2], "pipe")) {
        ok = dprintf(5, "hello from %d\n", getpid()) > 0;
    } else if (!strcmp(argv[2], "ghost")) {
        char block[4096];
        for (long at = 0; ok && at < size; at += sizeof block) {
            long n = size - at < (long)sizeof block ? size - at : (long)sizeof block;
            ok = pread(5, block, n, at) == n;
            for (long i = 0; ok && i < n; i++) ok = block[i] == (char)((at + i) * 7 + 1);
        }
    }
    FILE *out = fopen(argv[1], "w");
    fprintf(out, ok ? "PASS\n" : "FAIL\n");
    fclose(out);
    return !ok;
}
