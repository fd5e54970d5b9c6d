/* ci/fixture-procs.c: tiny processes for ci/make-criu-fixtures.sh to dump with the
 * reference CRIU. Each mode sets up one kind of kernel state, detaches into its own
 * session with stdio on /dev/null, writes its pid to PIDFILE and sleeps forever.
 *
 *   fixture-procs MODE PIDFILE [SCRATCH_DIR]
 *   MODE: regular-file | pipe | socketpair | pending-signal | threads
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char *what)
{
    fprintf(stderr, "fixture-procs: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void write_all(int fd, const char *text)
{
    size_t length = strlen(text);
    if (write(fd, text, length) != (ssize_t)length)
        die("write");
}

static void setup_regular_file(const char *scratch_dir)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/regular-file.txt", scratch_dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        die("open regular file");
    write_all(fd, "crust fixture: an open regular file\n");
    if (lseek(fd, 6, SEEK_SET) != 6) /* a position that is neither 0 nor the end */
        die("lseek");
    int read_only_fd = open(path, O_RDONLY | O_CLOEXEC);
    if (read_only_fd < 0)
        die("open read-only");
}

static void setup_pipe(void)
{
    int ends[2];
    if (pipe(ends) < 0)
        die("pipe");
    write_all(ends[1], "bytes queued in a pipe\n");
}

static void setup_socketpair(void)
{
    int stream_pair[2], datagram_pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, stream_pair) < 0)
        die("socketpair stream");
    write_all(stream_pair[0], "queued on a unix stream socket\n");
    if (socketpair(AF_UNIX, SOCK_DGRAM, 0, datagram_pair) < 0)
        die("socketpair dgram");
    write_all(datagram_pair[1], "one datagram");
}

static void on_usr2(int signal_number) { (void)signal_number; }

static void setup_pending_signal(void)
{
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_handler = on_usr2;
    action.sa_flags = SA_RESTART;
    if (sigaction(SIGUSR2, &action, NULL) < 0)
        die("sigaction");
    sigset_t blocked;
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGUSR1);
    sigaddset(&blocked, SIGRTMIN + 1);
    if (sigprocmask(SIG_BLOCK, &blocked, NULL) < 0)
        die("sigprocmask");
    if (raise(SIGUSR1) != 0) /* thread-directed, stays pending */
        die("raise");
    if (kill(getpid(), SIGRTMIN + 1) < 0) /* process-wide, stays pending */
        die("kill");
}

static void *sleeping_thread(void *unused)
{
    (void)unused;
    for (;;)
        pause();
    return NULL;
}

static void setup_threads(void)
{
    pthread_t thread;
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    pthread_attr_setstacksize(&attributes, 64 * 1024);
    if (pthread_create(&thread, &attributes, sleeping_thread, NULL) != 0)
        die("pthread_create");
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODE PIDFILE [SCRATCH_DIR]\n", argv[0]);
        return 2;
    }
    const char *mode = argv[1], *pidfile = argv[2];
    const char *scratch_dir = argc > 3 ? argv[3] : "/tmp";

    pid_t child = fork();
    if (child < 0)
        die("fork");
    if (child > 0) {
        /* The parent leaves at once; the child is reparented and lives alone. */
        return 0;
    }
    if (setsid() < 0)
        die("setsid");
    int null_fd = open("/dev/null", O_RDWR);
    if (null_fd < 0)
        die("open /dev/null");

    if (strcmp(mode, "regular-file") == 0)
        setup_regular_file(scratch_dir);
    else if (strcmp(mode, "pipe") == 0)
        setup_pipe();
    else if (strcmp(mode, "socketpair") == 0)
        setup_socketpair();
    else if (strcmp(mode, "pending-signal") == 0)
        setup_pending_signal();
    else if (strcmp(mode, "threads") == 0)
        setup_threads();
    else {
        fprintf(stderr, "fixture-procs: unknown mode %s\n", mode);
        return 2;
    }

    char temporary[4096], pid_text[32];
    snprintf(temporary, sizeof(temporary), "%s.tmp", pidfile);
    int pid_fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (pid_fd < 0)
        die("open pidfile");
    snprintf(pid_text, sizeof(pid_text), "%d\n", (int)getpid());
    write_all(pid_fd, pid_text);
    close(pid_fd);
    if (rename(temporary, pidfile) < 0)
        die("rename pidfile");

    dup2(null_fd, 0);
    dup2(null_fd, 1);
    dup2(null_fd, 2);
    close(null_fd);
    for (;;)
        pause();
}
