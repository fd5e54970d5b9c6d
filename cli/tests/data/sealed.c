/* A process with one area sealed with mseal (Linux 6.10): it writes "sealed ADDR" or
 * "nosys" on fd 3, closes it, and waits. Its seal must survive a refused dump. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef __NR_mseal
#define __NR_mseal 462
#endif

int main(void) {
    char *area = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (area == MAP_FAILED)
        return 1;
    strcpy(area, "kept");
    char line[64];
    if (syscall(__NR_mseal, area, 4096, 0) == 0)
        snprintf(line, sizeof line, "sealed %lx", (unsigned long)area);
    else
        snprintf(line, sizeof line, "nosys %d", errno);
    if (write(3, line, strlen(line)) < 0)
        return 1;
    close(3);
    for (;;)
        pause();
}
