/* A process holding one kind of state crust refuses (argv[1]), in a directory argv[2]:
 * it writes "ready PID" (PID: the process that holds the state) or "skip REASON" on
 * fd 3, closes it, and waits. Its state must be left as it was by a refused dump. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/fanotify.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <signal.h>
#include <unistd.h>

static void say(const char *fmt, long value) {
    char line[256];
    snprintf(line, sizeof line, fmt, value);
    if (write(3, line, strlen(line)) < 0)
        exit(1);
    close(3);
}

int main(int argc, char **argv) {
    if (argc < 3)
        return 2;
    const char *mode = argv[1];
    if (chdir(argv[2]))
        return 1;
    long holder = getpid();
    if (!strcmp(mode, "epoll")) {
        /* The watched pipe end lives on at fd 10, not at the number it was added under. */
        int ends[2], ep = epoll_create1(0);
        struct epoll_event event = { .events = EPOLLIN };
        if (pipe(ends) || ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, ends[0], &event) || dup2(ends[0], 10) < 0)
            return 1;
        close(ends[0]);
    } else if (!strcmp(mode, "aio")) {
        unsigned long context = 0;
        if (syscall(SYS_io_setup, 8, &context))
            return 1;
    } else if (!strcmp(mode, "fanotify")) {
        if (fanotify_init(FAN_CLASS_NOTIF, O_RDONLY) < 0) {
            say("skip fanotify_init: errno %ld", errno);
            goto wait;
        }
    } else if (!strcmp(mode, "hugetlb")) {
        if (syscall(SYS_memfd_create, "huge", MFD_HUGETLB) < 0) {
            say("skip memfd_create(MFD_HUGETLB): errno %ld", errno);
            goto wait;
        }
    } else if (!strcmp(mode, "nsfs")) {
        if (open("/proc/self/ns/uts", O_RDONLY) < 0)
            return 1;
    } else if (!strcmp(mode, "ghost-dir")) {
        mkdir("gone", 0755);
        int fd = open("gone/file", O_RDWR | O_CREAT, 0600);
        if (fd < 0 || write(fd, "data", 4) != 4 || unlink("gone/file") || rmdir("gone"))
            return 1;
    } else if (!strcmp(mode, "devtty")) {
        /* A child leads a session whose controlling terminal is a pty of this tree, and
         * holds it through /dev/tty as well. */
        int master = posix_openpt(O_RDWR | O_NOCTTY), sync[2];
        if (master < 0 || grantpt(master) || unlockpt(master) || pipe(sync))
            return 1;
        pid_t child = fork();
        if (child == 0) {
            close(3);
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (setsid() < 0 || open(ptsname(master), O_RDWR) < 0 || open("/dev/tty", O_RDWR) < 0)
                _exit(1);
            close(sync[0]);
            close(sync[1]);
            for (;;)
                pause();
        }
        close(sync[1]);
        char byte;
        if (read(sync[0], &byte, 1) != 0)
            return 1;
        holder = child;
    } else {
        return 2;
    }
    say("ready %ld", holder);
wait:
    for (;;)
        pause();
}
