/* vdso_unmapped: the process unmapped its [vdso] and [vvar] areas (and calls the time
 * syscalls directly from then on). After restore neither area is back in
 * /proc/self/maps and the process runs on. */
#define _GNU_SOURCE
#include "zdtmtst.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Unmaps every area named `name` in /proc/self/maps; returns how many there were. */
static int special_areas(const char *name, int unmap)
{
	char line[512];
	int found = 0;
	FILE *maps = fopen("/proc/self/maps", "r");
	if (!maps)
		fail("open /proc/self/maps: %m");
	unsigned long starts[8], ends[8];
	while (fgets(line, sizeof(line), maps))
		if (strstr(line, name) && found < 8 && sscanf(line, "%lx-%lx", &starts[found], &ends[found]) == 2)
			found++;
	fclose(maps);
	for (int i = 0; unmap && i < found; i++)
		if (munmap((void *)starts[i], ends[i] - starts[i]))
			fail("munmap %s: %m", name);
	return found;
}

int main(int argc, char **argv)
{
	test_init("vdso_unmapped", argc, argv);
	if (!special_areas("[vdso]", 1))
		test_skip("no [vdso] area to unmap");
	special_areas("[vvar", 1);
	if (special_areas("[vdso]", 0) || special_areas("[vvar", 0))
		fail("[vdso] or [vvar] still mapped after munmap");
	struct timespec before, after;
	syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &before);
	/* SIGTERM is taken with sigwait, not the library's handler: on aarch64 (and ppc64)
	 * glibc sets no SA_RESTORER, so a handler returns through the vDSO's sigreturn
	 * trampoline, which is gone (SIGSEGV, with or without a dump). */
	sigset_t term;
	int sig;
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	if (sigprocmask(SIG_BLOCK, &term, NULL))
		fail("block SIGTERM: %m");
	test_ready();
	if (sigwait(&term, &sig) || sig != SIGTERM)
		fail("sigwait for SIGTERM");
	if (special_areas("[vdso]", 0) || special_areas("[vvar", 0))
		fail("[vdso] or [vvar] is mapped again after restore");
	syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &after);
	if (after.tv_sec < before.tv_sec)
		fail("CLOCK_MONOTONIC went back");
	pass();
}
