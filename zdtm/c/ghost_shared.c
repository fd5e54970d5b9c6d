/* ghost_shared: unlinked files reached through several open file descriptions and
 * mappings, in a parent and a child forked before the dump; each inode must come back as
 * one file, whatever reaches it.
 * File A (4 pages of this run's random data), opened O_RDWR by the parent:
 * - mapped MAP_PRIVATE through that fd, page 0 written (copied-on-write), page 1 only read;
 * - mapped MAP_SHARED through it;
 * - mapped MAP_SHARED read-only through a second description opened O_RDONLY (so its area
 *   has no VM_MAYWRITE: `mw` is compared by the harness);
 * - the child inherits the O_RDWR fd and opens a description of its own by name before
 *   the unlink; the parent opens a third one through /proc/self/fd after it.
 * File B, another unlinked file, open in the parent only: it must stay another file.
 * After restore: the parent pwrites a token into page 1 through its first fd: the private
 * mapping's page 1 (never copied) and both shared mappings show it, the private mapping's
 * page 0 keeps its own bytes, file B does not change. It forwards SIGTERM to the child,
 * which must read the token through both its descriptions and answers with its own token
 * in page 3 through its own description, which the parent must read through its third
 * description and its shared mappings. */
#define _GNU_SOURCE
#include "tree_util.h"
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#define PAGES 4

static uint64_t seed;
static long page;
static char path_a[4096], path_b[4096];
static int fd_a, fd_b;
static char *private_map, *shared_map, *readonly_map;

static uint64_t token(int who) { return ~seed ^ (0x6705700ull + (uint64_t)who); }

/* 0 when `p` (page `pg` of file A) holds the file's data from word `from` on. */
static int holds_data(const char *p, long pg, long from)
{
	for (long j = from; j < page / 8; j++)
		if (((const uint64_t *)p)[j] != test_pattern_word(seed + (uint64_t)pg, (uint64_t)j)) {
			test_log("page %ld word %ld: %#llx", pg, j, (unsigned long long)((const uint64_t *)p)[j]);
			return -1;
		}
	return 0;
}

static uint64_t read_word(int fd, long pg)
{
	uint64_t v = 0;
	if (pread(fd, &v, 8, pg * page) != 8)
		return 0;
	return v;
}

static int child(void *arg)
{
	(void)arg;
	int own = open(path_a, O_RDWR);
	if (own < 0)
		CHILD_FAIL("open %s again: %m", path_a);
	child_ready();
	test_waitsig();
	/* The parent wrote its token into page 1 before it forwarded SIGTERM. */
	if (read_word(own, 1) != token(0) || read_word(fd_a, 1) != token(0))
		CHILD_FAIL("page 1 through its own description %#llx, through the inherited fd %#llx: not the parent's token",
			   (unsigned long long)read_word(own, 1), (unsigned long long)read_word(fd_a, 1));
	if (holds_data(shared_map + 2 * page, 2, 0))
		CHILD_FAIL("page 2 through the inherited shared mapping lost its data");
	uint64_t mine = token(1);
	if (pwrite(own, &mine, 8, 3 * page) != 8)
		CHILD_FAIL("pwrite: %m");
	return 0;
}

int main(int argc, char **argv)
{
	test_init("ghost_shared", argc, argv);
	seed = test_rand64();
	page = sysconf(_SC_PAGESIZE);
	test_path(path_a, sizeof(path_a), "ghost_shared.a");
	test_path(path_b, sizeof(path_b), "ghost_shared.b");
	unlink(path_a);
	unlink(path_b);
	fd_a = open(path_a, O_RDWR | O_CREAT | O_EXCL, 0600);
	fd_b = open(path_b, O_RDWR | O_CREAT | O_EXCL, 0600);
	if (fd_a < 0 || fd_b < 0)
		fail("create: %m");
	char *buf = malloc(PAGES * page);
	for (long pg = 0; pg < PAGES; pg++)
		test_fill(buf + pg * page, page, seed + (uint64_t)pg);
	if (write(fd_a, buf, PAGES * page) != PAGES * page)
		fail("write A: %m");
	memset(buf, 'B', page);
	if (write(fd_b, buf, page) != page)
		fail("write B: %m");
	int readonly = open(path_a, O_RDONLY);
	if (readonly < 0)
		fail("open A read-only: %m");
	private_map = mmap(NULL, PAGES * page, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd_a, 0);
	shared_map = mmap(NULL, PAGES * page, PROT_READ | PROT_WRITE, MAP_SHARED, fd_a, 0);
	readonly_map = mmap(NULL, PAGES * page, PROT_READ, MAP_SHARED, readonly, 0);
	if (private_map == MAP_FAILED || shared_map == MAP_FAILED || readonly_map == MAP_FAILED)
		fail("mmap: %m");
	close(readonly);
	((uint64_t *)private_map)[0] = ~seed; /* page 0: a copy of its own */
	if (holds_data(private_map + page, 1, 0))
		fail("page 1 before the dump");
	pid_t kid = fork_child(child, NULL);
	if (unlink(path_a) || unlink(path_b))
		fail("unlink: %m");
	char self[64];
	snprintf(self, sizeof(self), "/proc/self/fd/%d", fd_a);
	int third = open(self, O_RDWR);
	if (third < 0)
		fail("open %s: %m", self);
	test_ready();
	test_waitsig();

	struct stat a1, a3, b;
	if (fstat(fd_a, &a1) || fstat(third, &a3) || fstat(fd_b, &b))
		fail("fstat: %m");
	if (a1.st_ino != a3.st_ino || a1.st_dev != a3.st_dev)
		fail("two descriptions of file A are different files after restore");
	if (a1.st_ino == b.st_ino && a1.st_dev == b.st_dev)
		fail("files A and B are one file after restore");
	for (long pg = 0; pg < PAGES; pg++)
		if (holds_data(shared_map + pg * page, pg, 0) || holds_data(readonly_map + pg * page, pg, 0) ||
		    holds_data(private_map + pg * page, pg, pg == 0 ? 1 : 0))
			fail("page %ld of file A lost its data (see log)", pg);
	if (((uint64_t *)private_map)[0] != ~seed)
		fail("the private mapping's own page 0 lost its bytes");
	uint64_t t = token(0);
	if (pwrite(fd_a, &t, 8, page) != 8)
		fail("pwrite: %m");
	if (*(volatile uint64_t *)(private_map + page) != t)
		fail("the private mapping's page 1 does not show a write through the fd: fd and mapping are different files");
	if (*(volatile uint64_t *)(shared_map + page) != t || *(volatile uint64_t *)(readonly_map + page) != t)
		fail("a shared mapping does not show a write through the fd");
	if (((uint64_t *)private_map)[0] != ~seed)
		fail("the private mapping's own page 0 changed");
	if (read_word(fd_b, 0) != 0x4242424242424242ull)
		fail("file B changed: %#llx", (unsigned long long)read_word(fd_b, 0));
	if (reap_ok(kid))
		fail("child failed (see log)");
	if (read_word(third, 3) != token(1) || *(volatile uint64_t *)(shared_map + 3 * page) != token(1) ||
	    *(volatile uint64_t *)(readonly_map + 3 * page) != token(1))
		fail("the child's write through its own description is not in the parent's file");
	pass();
}
