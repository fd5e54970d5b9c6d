/* cow_file_shared: pages of a private file mapping shared copy-on-write between a parent
 * and its child. A 4 MiB file of this run's random data is mapped MAP_PRIVATE; the
 * parent rewrites its first 1008 pages (each becomes an anonymous copy-on-write page)
 * and forks; the child rewrites 16 of them, and copies two pages the parent left to the
 * file by writing their own bytes back (private copies equal to the file).
 * After restore: each process sees what it wrote; at least half of the pages are still
 * mapped by both (/proc/self/pagemap: present, anonymous, not exclusive), as at dump
 * time; and a write into the file through an fd shows in the pages that are still the
 * file's, in both, but not in the child's two private copies. */
#define _GNU_SOURCE
#include "tree_util.h"
#include <fcntl.h>
#include <sys/mman.h>

#define SIZE (4 << 20)
#define WRITTEN 1008
#define MARKS_AT 100
#define MARKS 16
#define COPIED_AT 1010 /* the child's two private copies: 1010 and 1011 */
#define FILE_PAGE 1012 /* left to the file by both */

static uint64_t seed;
static long page, npages;
static char *area;
static int fd;
static char path[4096];

/* Word `j` of page `pg` as `who` left it: 0 the parent's rewrite, 1 the child's marks,
 * -1 the file's data. */
static uint64_t word(int who, long pg, long j)
{
	uint64_t s = who < 0 ? seed : who == 0 ? ~seed : seed ^ 0x5a5a5a5a;
	return test_pattern_word(s + (uint64_t)pg, (uint64_t)j);
}

static void write_page(int who, long pg)
{
	for (long j = 0; j < page / 8; j++)
		((uint64_t *)(area + pg * page))[j] = word(who, pg, j);
}

/* Who process `me` expects in page `pg`. */
static int expected(int me, long pg)
{
	if (me == 1 && pg >= MARKS_AT && pg < MARKS_AT + MARKS)
		return 1;
	return pg < WRITTEN ? 0 : -1;
}

/* The child checks after the parent wrote its token into word 0 of FILE_PAGE (checked
 * apart). */
static int check_contents(int me)
{
	for (long pg = 0; pg < npages; pg++)
		for (long j = me == 1 && pg == FILE_PAGE ? 1 : 0; j < page / 8; j++)
			if (((uint64_t *)(area + pg * page))[j] != word(expected(me, pg), pg, j)) {
				test_log("%d: page %ld word %ld differs", me, pg, j);
				return -1;
			}
	return 0;
}

static long shared_pages(void)
{
	int pm = open("/proc/self/pagemap", O_RDONLY);
	long n = 0;
	if (pm < 0)
		return -1;
	for (long i = 0; i < npages; i++) {
		uint64_t e;
		if (pread(pm, &e, 8, ((uintptr_t)area / page + i) * 8) != 8)
			break;
		if ((e >> 63) & 1 && !((e >> 61) & 1) && !((e >> 56) & 1))
			n++;
	}
	close(pm);
	return n;
}

static uint64_t token(long pg) { return ~seed ^ (0x70cc00ull + (uint64_t)pg); }

static int child(void *arg)
{
	(void)arg;
	for (long pg = MARKS_AT; pg < MARKS_AT + MARKS; pg++)
		write_page(1, pg);
	for (long pg = COPIED_AT; pg < COPIED_AT + 2; pg++)
		for (long j = 0; j < page / 8; j++)
			((volatile uint64_t *)(area + pg * page))[j] = ((volatile uint64_t *)(area + pg * page))[j];
	long before = shared_pages();
	child_ready();
	test_waitsig();
	if (check_contents(1))
		CHILD_FAIL("contents differ (see above)");
	long after = shared_pages();
	if (after < npages / 2)
		CHILD_FAIL("%ld of %ld pages shared after restore, %ld before", after, npages, before);
	/* The parent wrote tokens into file pages COPIED_AT and FILE_PAGE before it forwarded
	 * SIGTERM: the child's private copy must not show it, the file's page must. */
	if (*(volatile uint64_t *)(area + COPIED_AT * page) != word(-1, COPIED_AT, 0))
		CHILD_FAIL("its private copy of page %d shows a later write to the file", COPIED_AT);
	if (*(volatile uint64_t *)(area + FILE_PAGE * page) != token(FILE_PAGE))
		CHILD_FAIL("page %d, the file's, does not show a write to the file", FILE_PAGE);
	return 0;
}

int main(int argc, char **argv)
{
	test_init("cow_file_shared", argc, argv);
	seed = test_rand64();
	page = sysconf(_SC_PAGESIZE);
	npages = SIZE / page;
	test_path(path, sizeof(path), "cow_file_shared.data");
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		fail("open %s: %m", path);
	char *buf = malloc(page);
	for (long pg = 0; pg < npages; pg++) {
		for (long j = 0; j < page / 8; j++)
			((uint64_t *)buf)[j] = word(-1, pg, j);
		if (pwrite(fd, buf, page, pg * page) != page)
			fail("write: %m");
	}
	area = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	if (area == MAP_FAILED)
		fail("mmap: %m");
	for (long pg = 0; pg < WRITTEN; pg++)
		write_page(0, pg);
	pid_t kid = fork_child(child, NULL);
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
	for (long pg = COPIED_AT; pg <= FILE_PAGE; pg += FILE_PAGE - COPIED_AT) {
		uint64_t t = token(pg);
		if (pwrite(fd, &t, 8, pg * page) != 8)
			fail("pwrite: %m");
		if (*(volatile uint64_t *)(area + pg * page) != t)
			fail("page %ld, the file's in the parent, does not show a write to the file", pg);
	}
	if (reap_ok(kid))
		fail("child failed (see log)");
	unlink(path);
	pass();
}
