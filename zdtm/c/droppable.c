/* droppable: a MAP_DROPPABLE area (Linux 6.11), whose contents the kernel may drop at
 * any moment, beside an ordinary private area with this run's random data. CRIU records
 * the area's map type (MAP_DROPPABLE) and none of its pages: it comes back droppable
 * (VmFlags `dp`, with the `wf` and `dd` the kernel gives it) and empty, while the other
 * area keeps its data. Skips where mmap refuses MAP_DROPPABLE. */
#define _GNU_SOURCE
#include "zdtmtst.h"
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#ifndef MAP_DROPPABLE
#define MAP_DROPPABLE 0x08
#endif

#define PAGES 16

/* The VmFlags line of the area at `addr`, from /proc/self/smaps, padded with spaces. */
static void vm_flags_of(const void *addr, char *out, size_t size)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[1024];
	int in = 0;
	snprintf(out, size, " ");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		unsigned long s, e;
		if (sscanf(line, "%lx-%lx ", &s, &e) == 2 && strchr(line, '-') < strchr(line, ' ')) {
			in = (unsigned long)addr >= s && (unsigned long)addr < e;
			continue;
		}
		if (in && !strncmp(line, "VmFlags:", 8)) {
			line[strcspn(line, "\n")] = 0;
			snprintf(out, size, "%s ", line + 8);
			break;
		}
	}
	fclose(f);
}

int main(int argc, char **argv)
{
	test_init("droppable", argc, argv);
	long page = sysconf(_SC_PAGESIZE);
	uint64_t seed = test_rand64();
	char *drop = mmap(NULL, PAGES * page, PROT_READ | PROT_WRITE, MAP_DROPPABLE | MAP_ANONYMOUS, -1, 0);
	if (drop == MAP_FAILED && errno == EINVAL)
		test_skip("mmap refuses MAP_DROPPABLE (Linux 6.11)");
	if (drop == MAP_FAILED)
		fail("mmap MAP_DROPPABLE: %m");
	char *keep = mmap(NULL, PAGES * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (keep == MAP_FAILED)
		fail("mmap: %m");
	memset(drop, 'D', PAGES * page);
	test_fill(keep, PAGES * page, seed);
	char before[1100], after[1100];
	vm_flags_of(drop, before, sizeof(before));
	if (!strstr(before, " dp "))
		fail("no dp in VmFlags before the dump:%s", before);
	test_ready();
	test_waitsig();

	long bad = test_check(keep, PAGES * page, seed);
	if (bad >= 0)
		fail("the ordinary area lost its data at byte %ld", bad);
	vm_flags_of(drop, after, sizeof(after));
	if (!strstr(after, " dp "))
		fail("the area is no longer droppable (VmFlags%s)", after);
	long full = 0;
	for (long i = 0; i < PAGES * page; i++)
		full += drop[i] != 0;
	if (full)
		fail("%ld bytes of the droppable area came back (its pages are not dumped)", full);
	/* Still usable memory. */
	memset(drop, 'E', PAGES * page);
	pass();
}
