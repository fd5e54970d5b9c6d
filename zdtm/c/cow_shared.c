/* cow_shared: private anonymous memory still shared copy-on-write between a parent and
 * its two children at dump time. Before the fork the parent fills 16 MiB; then the
 * parent and the first child each rewrite pages of their own, and the second child rewrites some and
 * drops others (MADV_DONTNEED).
 * After restore, in every process: each page holds what that process last wrote (the
 * pattern, its own marks, zeros where it dropped pages), and at least half of the
 * area's pages are still mapped by more than one process (/proc/self/pagemap: present
 * and not exclusive), as they were at dump time: the restored tree does not hold a copy
 * of the area per process. */
#define _GNU_SOURCE
#include "tree_util.h"
#include <fcntl.h>
#include <sys/mman.h>

#define SIZE (16 << 20)
#define MARKS 16

static uint64_t seed;
static char *area;
static long page;
static long npages;

/* First page of each process's own marks, and of child 1's dropped pages. */
static long mark_start(int who) { return (1 + who) * npages / 8; }
static long dropped_start(void) { return npages / 2; }

static void mark(int who)
{
	for (long i = mark_start(who); i < mark_start(who) + MARKS; i++)
		*(uint64_t *)(area + i * page) = ~seed ^ (uint64_t)(who * 1000 + i);
}

/* 0 when every page holds what process `who` (0: parent, 1, 2: children) wrote. */
static int check_contents(int who)
{
	for (long i = 0; i < npages; i++) {
		const char *p = area + i * page;
		int mine = i >= mark_start(who) && i < mark_start(who) + MARKS;
		int dropped = who == 2 && i >= dropped_start() && i < dropped_start() + MARKS;
		if (dropped) {
			for (long j = 0; j < page; j++)
				if (p[j]) {
					test_log("%d: dropped page %ld holds data", who, i);
					return -1;
				}
			continue;
		}
		if (mine && *(const uint64_t *)p != (~seed ^ (uint64_t)(who * 1000 + i))) {
			test_log("%d: page %ld lost its mark", who, i);
			return -1;
		}
		for (long j = mine ? 1 : 0; j < page / 8; j++)
			if (((const uint64_t *)p)[j] != test_pattern_word(seed + i, j)) {
				test_log("%d: page %ld word %ld changed", who, i, j);
				return -1;
			}
	}
	return 0;
}

/* Pages of the area present and mapped by more than one process. */
static long shared_pages(void)
{
	int fd = open("/proc/self/pagemap", O_RDONLY);
	if (fd < 0)
		return -1;
	long shared = 0;
	for (long i = 0; i < npages; i++) {
		uint64_t entry;
		if (pread(fd, &entry, 8, ((uintptr_t)area / page + i) * 8) != 8) {
			close(fd);
			return -1;
		}
		if ((entry >> 63) & 1 && !((entry >> 56) & 1))
			shared++;
	}
	close(fd);
	return shared;
}

static int child(void *arg)
{
	int who = (int)(intptr_t)arg;
	mark(who);
	if (who == 2 && madvise(area + dropped_start() * page, MARKS * page, MADV_DONTNEED))
		CHILD_FAIL("MADV_DONTNEED: %m");
	long before = shared_pages();
	child_ready();
	test_waitsig();
	if (check_contents(who))
		CHILD_FAIL("contents differ (see above)");
	long after = shared_pages();
	if (after < npages / 2)
		CHILD_FAIL("%ld of %ld pages shared after restore, %ld before", after, npages, before);
	return 0;
}

int main(int argc, char **argv)
{
	test_init("cow_shared", argc, argv);
	seed = test_rand64();
	page = sysconf(_SC_PAGESIZE);
	npages = SIZE / page;
	area = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED)
		fail("mmap: %m");
	/* Small pages only: sharing is counted per page. */
	madvise(area, SIZE, MADV_NOHUGEPAGE);
	for (long i = 0; i < npages; i++)
		test_fill(area + i * page, page, seed + i);
	pid_t kids[2];
	for (int k = 0; k < 2; k++)
		kids[k] = fork_child(child, (void *)(intptr_t)(k + 1));
	mark(0);
	long before = shared_pages();
	if (before < npages / 2)
		fail("only %ld of %ld pages shared before the dump", before, npages);
	test_ready();
	test_waitsig();

	if (check_contents(0))
		fail("contents differ (see log)");
	long after = shared_pages();
	if (after < npages / 2)
		fail("%ld of %ld pages shared after restore, %ld before", after, npages, before);
	for (int k = 0; k < 2; k++)
		if (reap_ok(kids[k]))
			fail("child %d failed", k + 1);
	pass();
}
