/* A process with a child made by clone(CLONE_FILES) or clone(CLONE_FS) (argv[1]:
 * "files" or "fs"): it writes the child's pid on fd 3, closes it, and waits. The child
 * dies with it (PR_SET_PDEATHSIG). */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

static char stack[64 * 1024];

static int child(void *arg) {
    /* Without a shared fd table its copy of the ready pipe must go too. */
    if (!*(int *)arg)
        close(3);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    for (;;)
        pause();
}

int main(int argc, char **argv) {
    int flags = argc > 1 && strcmp(argv[1], "fs") == 0 ? CLONE_FS : CLONE_FILES;
    int shares_files = flags == CLONE_FILES;
    int pid = clone(child, stack + sizeof stack, flags | SIGCHLD, &shares_files);
    if (pid < 0)
        return 1;
    char line[32];
    snprintf(line, sizeof line, "%d", pid);
    if (write(3, line, strlen(line)) < 0)
        return 1;
    close(3);
    for (;;)
        pause();
}
