/* A process that made a time namespace for its children only (unshare(CLONE_NEWTIME)
 * without execve or fork): /proc/self/ns/time_for_children differs from time. It writes
 * "ready" or "unshare ERRNO" on fd 3, closes it, and waits. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x80
#endif

int main(void) {
    char line[64];
    if (unshare(CLONE_NEWTIME) == 0)
        snprintf(line, sizeof line, "ready");
    else
        snprintf(line, sizeof line, "unshare %d", errno);
    if (write(3, line, strlen(line)) < 0)
        return 1;
    close(3);
    for (;;)
        pause();
}
