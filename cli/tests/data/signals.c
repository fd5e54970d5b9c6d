/* A process that records every signal it gets, to show that a dump which fails leaves
 * each signal sent meanwhile to be delivered exactly as without the dump: once, with
 * its own siginfo, to the thread it was meant for, interrupting what that thread waits
 * in. SIGUSR1 and SIGRTMIN+3 (process-directed) are blocked in the second thread, so the
 * main thread takes them, interrupting its read() of the control FIFO (argv[2]);
 * SIGUSR2 is blocked in the main thread and sent to the second thread, which sleeps in
 * pause(). No handler has SA_RESTART. Each handler appends (signal, si_code, si_pid,
 * si_value, which thread) to a log. The process writes "PID TID2" on fd 3 and closes
 * it; "report" on the FIFO writes the log to argv[1] (one line per signal, then whether
 * the main thread's read() was interrupted) and exits 0. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

struct entry { int signo, code, pid, value, thread; };
static struct entry entries[64];
static int count;
static pid_t main_tid;
static int tid_pipe[2];

static void on_signal(int sig, siginfo_t *info, void *context) {
    (void)context;
    int index = __atomic_fetch_add(&count, 1, __ATOMIC_SEQ_CST);
    if (index < 64) {
        entries[index] = (struct entry){ sig, info->si_code, info->si_pid, info->si_value.sival_int,
                                         (pid_t)syscall(SYS_gettid) == main_tid ? 0 : 1 };
    }
}

static void *second(void *arg) {
    (void)arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGRTMIN + 3);
    pthread_sigmask(SIG_SETMASK, &set, NULL);
    pid_t tid = (pid_t)syscall(SYS_gettid);
    if (write(tid_pipe[1], &tid, sizeof tid) != sizeof tid) return NULL;
    for (;;) pause();
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    main_tid = (pid_t)syscall(SYS_gettid);
    setsid();
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0); dup2(null, 1); dup2(null, 2); close(null);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL);
    sigaction(SIGRTMIN + 3, &sa, NULL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    pthread_sigmask(SIG_SETMASK, &set, NULL);
    int fifo = open(argv[2], O_RDWR);
    if (fifo < 0 || pipe(tid_pipe)) return 3;
    pthread_t thread;
    if (pthread_create(&thread, NULL, second, NULL)) return 4;
    pid_t tid2;
    if (read(tid_pipe[0], &tid2, sizeof tid2) != sizeof tid2) return 5;
    close(tid_pipe[0]);
    close(tid_pipe[1]);
    dprintf(3, "%d %d\n", getpid(), tid2);
    close(3);
    int interrupted = 0;
    char buf[64];
    for (;;) {
        ssize_t n = read(fifo, buf, sizeof buf);
        if (n < 0 && errno == EINTR) {
            interrupted = 1;
            continue;
        }
        if (n >= 6 && !memcmp(buf, "report", 6)) break;
    }
    FILE *out = fopen(argv[1], "w");
    int seen = __atomic_load_n(&count, __ATOMIC_SEQ_CST);
    for (int i = 0; i < seen && i < 64; i++)
        fprintf(out, "%d %d %d %d %d\n", entries[i].signo, entries[i].code, entries[i].pid, entries[i].value, entries[i].thread);
    fprintf(out, "interrupted %d\n", interrupted);
    fclose(out);
    return 0;
}
