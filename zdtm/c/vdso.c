/* vdso: glibc resolved its vDSO entry points before the dump and keeps calling them
 * through cached pointers; after restore they must still work and agree with the raw
 * syscalls, and the vDSO must sit where AT_SYSINFO_EHDR says. */
#define _GNU_SOURCE
#include "zdtmtst.h"

#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static double seconds(const struct timespec *t)
{
	return (double)t->tv_sec + t->tv_nsec / 1e9;
}

static unsigned long vdso_in_maps(void)
{
	FILE *maps = fopen("/proc/self/maps", "r");
	char line[512];
	unsigned long start = 0;
	while (maps && fgets(line, sizeof(line), maps))
		if (strstr(line, "[vdso]"))
			sscanf(line, "%lx-", &start);
	if (maps)
		fclose(maps);
	return start;
}

int main(int argc, char **argv)
{
	test_init("vdso", argc, argv);
	unsigned long ehdr = getauxval(AT_SYSINFO_EHDR);
	struct timespec mono_before, real_before;
	clock_gettime(CLOCK_MONOTONIC, &mono_before);
	clock_gettime(CLOCK_REALTIME, &real_before);

	test_ready();
	test_waitsig();

	unsigned long mapped = vdso_in_maps();
	if (!ehdr || mapped != ehdr)
		fail("[vdso] at %#lx, AT_SYSINFO_EHDR says %#lx", mapped, ehdr);
	for (int i = 0; i < 1000; i++) {
		struct timespec vdso_mono, raw_mono, vdso_real, raw_real;
		clock_gettime(CLOCK_MONOTONIC, &vdso_mono);
		syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &raw_mono);
		clock_gettime(CLOCK_REALTIME, &vdso_real);
		syscall(SYS_clock_gettime, CLOCK_REALTIME, &raw_real);
		if (seconds(&vdso_mono) < seconds(&mono_before))
			fail("vdso CLOCK_MONOTONIC went backwards across the restore");
		if (seconds(&raw_mono) - seconds(&vdso_mono) > 0.5 || seconds(&raw_mono) < seconds(&vdso_mono))
			fail("vdso and syscall CLOCK_MONOTONIC disagree: %f vs %f", seconds(&vdso_mono),
			     seconds(&raw_mono));
		if (seconds(&raw_real) - seconds(&vdso_real) > 0.5 || seconds(&raw_real) < seconds(&vdso_real) - 0.5)
			fail("vdso and syscall CLOCK_REALTIME disagree");
	}
	struct timeval tv;
	gettimeofday(&tv, NULL);
	time_t t = time(NULL);
	if (t - tv.tv_sec > 1 || tv.tv_sec - t > 1)
		fail("time() and gettimeofday() disagree: %ld vs %ld", (long)t, (long)tv.tv_sec);
	unsigned cpu = ~0u;
	if (getcpu(&cpu, NULL) || cpu == ~0u)
		fail("getcpu after restore");
	pass();
}
