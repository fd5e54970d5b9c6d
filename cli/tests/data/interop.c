/* A process tree with state of many kinds, for cross restores (crust dumps and CRIU
 * restores, and the reverse): `interop OUT`.
 *
 * The root fills 8 MiB with a pattern derived from its pid, keeps a pipe and a unix
 * socket pair with unread data, a file open at an offset, a pty pair with its own
 * control characters, a thread asleep on a condition variable and one in nanosleep,
 * and a child (in a process group of its own) that sleeps in sigsuspend(). It writes its pid
 * on fd 3, closes it and blocks in read() on a pipe of its own; SIGUSR1 (SA_RESTART,
 * blocked in the other threads)
 * makes the handler write one byte there, so the read restarts and returns it only if
 * the restore resumed the interrupted syscall properly. A shared anonymous area of
 * SHARED bytes (MAP_SHARED|MAP_ANONYMOUS) holds a pattern from before the fork; the
 * child writes a word into it after the restore, which the parent must see. Then every piece of state is
 * checked, the child is asked to check its own memory, and OUT gets PASS or FAIL with
 * the first difference; the exit code is 0 or 1. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define MEM (8u << 20)
#define SHARED (3u << 20)

static int wake[2];
static volatile sig_atomic_t child_checked;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int released;
static char failure[256];

static void fail(const char *what) {
    if (!failure[0])
        snprintf(failure, sizeof failure, "%s", what);
}

static void on_usr1(int sig) {
    (void)sig;
    char byte = 'x';
    if (write(wake[1], &byte, 1) != 1)
        _exit(3);
}

static void on_usr2(int sig) { (void)sig; child_checked = 1; }

static uint64_t word(uint64_t seed, size_t i) { return seed ^ (i * 0x2545F4914F6CDD1Dull); }

static void *cond_waiter(void *arg) {
    (void)arg;
    pthread_mutex_lock(&lock);
    while (!released)
        pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
    return (void *)0x51;
}

static void *sleeper(void *arg) {
    (void)arg;
    struct timespec left = { 3600, 0 };
    while (nanosleep(&left, &left) == -1 && errno == EINTR && !released)
        ;
    return (void *)0x52;
}

static int child_main(uint64_t *mem, uint64_t *shared, uint64_t seed) {
    /* Its own copy of the pattern (copy-on-write after fork), flipped. */
    for (size_t i = 0; i < MEM / 8; i += 512)
        mem[i] = ~word(seed, i);
    struct sigaction sa = { .sa_handler = on_usr2 };
    sigaction(SIGUSR2, &sa, NULL);
    /* SIGUSR2 came blocked from the fork: one sent before the handler was set (the
     * dump may stop the child before that) waits, and sigsuspend takes it. */
    sigset_t waiting;
    sigprocmask(SIG_SETMASK, NULL, &waiting);
    sigdelset(&waiting, SIGUSR2);
    while (!child_checked)
        sigsuspend(&waiting);
    for (size_t i = 0; i < MEM / 8; i += 512)
        if (mem[i] != ~word(seed, i))
            return 1;
    for (size_t i = 2; i < SHARED / 8; i += 512)
        if (shared[i] != word(~seed, i))
            return 3;
    shared[1] = 0x5ea1ed;
    return getpgrp() == getpid() ? 0 : 2;
}

int main(int argc, char **argv) {
    if (argc < 2)
        return 2;
    setsid();
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0); dup2(null, 1); dup2(null, 2); close(null);
    for (int fd = 4; fd < 1024; fd++) close(fd);

    uint64_t *mem = mmap(NULL, MEM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint64_t seed = (uint64_t)getpid() * 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < MEM / 8; i++)
        mem[i] = word(seed, i);
    uint64_t *shared = mmap(NULL, SHARED, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED)
        return 2;
    for (size_t i = 2; i < SHARED / 8; i += 512)
        shared[i] = word(~seed, i);

    int data_pipe[2], pair[2];
    if (pipe(data_pipe) || socketpair(AF_UNIX, SOCK_STREAM, 0, pair) || pipe(wake))
        return 2;
    if (write(data_pipe[1], "pipe data", 9) != 9 || write(pair[0], "socket data", 11) != 11)
        return 2;
    char path[4096];
    snprintf(path, sizeof path, "%s.file", argv[1]);
    int file = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (file < 0 || write(file, "0123456789", 10) != 10 || lseek(file, 4, SEEK_SET) != 4)
        return 2;

    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || grantpt(master) || unlockpt(master))
        return 2;
    int slave = open(ptsname(master), O_RDWR | O_NOCTTY);
    struct termios tio;
    if (slave < 0 || tcgetattr(slave, &tio))
        return 2;
    tio.c_cc[VINTR] = 5; tio.c_cc[VQUIT] = 6; tio.c_cc[VEOF] = 7; tio.c_cc[VMIN] = 9; tio.c_cc[VTIME] = 4;
    if (tcsetattr(slave, TCSANOW, &tio))
        return 2;

    sigset_t usr2, before_fork;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    sigprocmask(SIG_BLOCK, &usr2, &before_fork);
    pid_t child = fork();
    if (child == 0) {
        close(3); /* the ready pipe is the parent's to close */
        setpgid(0, 0);
        _exit(child_main(mem, shared, seed));
    }
    sigprocmask(SIG_SETMASK, &before_fork, NULL);
    setpgid(child, child);

    /* SIGUSR1 is for the main thread's read alone; SIGUSR2 wakes the sleeper. */
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &usr1, NULL);
    struct sigaction sa2 = { .sa_handler = on_usr2 };
    sigaction(SIGUSR2, &sa2, NULL);
    pthread_t waiter, napper;
    pthread_create(&waiter, NULL, cond_waiter, NULL);
    pthread_create(&napper, NULL, sleeper, NULL);
    pthread_sigmask(SIG_UNBLOCK, &usr1, NULL);

    struct sigaction sa = { .sa_handler = on_usr1, .sa_flags = SA_RESTART };
    sigaction(SIGUSR1, &sa, NULL);
    dprintf(3, "%d\n", getpid());
    close(3);

    char byte = 0;
    ssize_t got = read(wake[0], &byte, 1);
    if (got != 1 || byte != 'x') {
        static char what[64];
        snprintf(what, sizeof what, "read returned %zd errno %d", got, errno);
        fail(what);
    }

    for (size_t i = 0; i < MEM / 8; i++)
        if (mem[i] != word(seed, i)) {
            fail("memory pattern");
            break;
        }
    char buf[32] = { 0 };
    if (read(data_pipe[0], buf, sizeof buf) != 9 || memcmp(buf, "pipe data", 9))
        fail("pipe data");
    memset(buf, 0, sizeof buf);
    if (recv(pair[1], buf, sizeof buf, MSG_DONTWAIT) != 11 || memcmp(buf, "socket data", 11))
        fail("socket data");
    if (lseek(file, 0, SEEK_CUR) != 4 || read(file, buf, 2) != 2 || memcmp(buf, "45", 2))
        fail("file offset");
    struct termios now;
    if (tcgetattr(slave, &now) || now.c_cc[VINTR] != 5 || now.c_cc[VQUIT] != 6 || now.c_cc[VEOF] != 7 || now.c_cc[VMIN] != 9 || now.c_cc[VTIME] != 4)
        fail("pty control characters");
    if (write(master, "to slave\n", 9) != 9)
        fail("pty write");

    pthread_mutex_lock(&lock);
    released = 1;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
    pthread_kill(napper, SIGUSR2);
    void *result = NULL;
    if (pthread_join(waiter, &result) || result != (void *)0x51)
        fail("condition variable thread");
    if (pthread_join(napper, &result) || result != (void *)0x52)
        fail("nanosleep thread");

    kill(child, SIGUSR2);
    int status = 0;
    if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail("child");
    else if (shared[1] != 0x5ea1ed)
        fail("shared anonymous memory: the child's write is not seen");
    for (size_t i = 2; i < SHARED / 8; i += 512)
        if (shared[i] != word(~seed, i)) {
            fail("shared anonymous memory pattern");
            break;
        }

    FILE *out = fopen(argv[1], "w");
    if (failure[0])
        fprintf(out, "FAIL %s\n", failure);
    else
        fprintf(out, "PASS\n");
    fclose(out);
    unlink(path);
    return failure[0] != 0;
}
