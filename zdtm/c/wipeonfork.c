/* wipeonfork: MADV_WIPEONFORK areas of a parent and a child forked before the dump, with
 * this run's random data:
 * - area A (4 pages): advised before the fork, so the child saw it zeroed and wrote its
 *   own data into the first half;
 * - area B (4 pages): advised after the fork, so the child kept a copy of the parent's
 *   data (pages still shared copy-on-write), wrote into its first half, and its own area
 *   does not wipe on fork;
 * - area C (1 MiB): advised before the fork, left alone by the child.
 * After restore every area of both holds what it held (VmFlags `wf` where it was, which
 * the harness compares too), and a child the parent forks after the restore sees A and C
 * wiped and B (wiped too: the parent advised it) zeroed as well. */
#define _GNU_SOURCE
#include "tree_util.h"
#include <sys/mman.h>

static long page;
static uint64_t seed;
static char *a, *b, *c;
#define SMALL 4
#define BIG 256

static int zero(const char *p, long bytes)
{
	for (long i = 0; i < bytes; i++)
		if (p[i])
			return 0;
	return 1;
}

static int child(void *arg)
{
	(void)arg;
	if (!zero(a, SMALL * page) || !zero(c, BIG * page))
		CHILD_FAIL("wipe-on-fork areas not zero in the child");
	if (test_check(b, SMALL * page, seed + 2) >= 0)
		CHILD_FAIL("area B is not the parent's copy in the child");
	test_fill(a, SMALL / 2 * page, seed + 11);
	test_fill(b, SMALL / 2 * page, seed + 12);
	child_ready();
	test_waitsig();
	if (test_check(a, SMALL / 2 * page, seed + 11) >= 0 || !zero(a + SMALL / 2 * page, SMALL / 2 * page))
		CHILD_FAIL("area A in the child");
	if (test_check(b, SMALL / 2 * page, seed + 12) >= 0)
		CHILD_FAIL("area B's first half in the child");
	/* The second half is still the parent's data (a copy-on-write page of the fill). */
	for (long i = SMALL / 2; i < SMALL; i++)
		for (long j = 0; j < page / 8; j++)
			if (((uint64_t *)(b + i * page))[j] != test_pattern_word(seed + 2, (uint64_t)(i * page / 8 + j)))
				CHILD_FAIL("area B's second half in the child, page %ld", i);
	if (!zero(c, BIG * page))
		CHILD_FAIL("area C in the child");
	return 0;
}

int main(int argc, char **argv)
{
	test_init("wipeonfork", argc, argv);
	page = sysconf(_SC_PAGESIZE);
	seed = test_rand64();
	a = mmap(NULL, SMALL * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	b = mmap(NULL, SMALL * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	c = mmap(NULL, BIG * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (a == MAP_FAILED || b == MAP_FAILED || c == MAP_FAILED)
		fail("mmap: %m");
	test_fill(a, SMALL * page, seed + 1);
	test_fill(b, SMALL * page, seed + 2);
	test_fill(c, BIG * page, seed + 3);
	if (madvise(a, SMALL * page, MADV_WIPEONFORK) || madvise(c, BIG * page, MADV_WIPEONFORK))
		fail("MADV_WIPEONFORK: %m");
	pid_t kid = fork_child(child, NULL);
	if (madvise(b, SMALL * page, MADV_WIPEONFORK))
		fail("MADV_WIPEONFORK: %m");
	test_ready();
	test_waitsig();

	if (test_check(a, SMALL * page, seed + 1) >= 0 || test_check(b, SMALL * page, seed + 2) >= 0 ||
	    test_check(c, BIG * page, seed + 3) >= 0)
		fail("an area of the parent lost its data");
	if (reap_ok(kid))
		fail("child failed (see log)");
	pid_t late = fork();
	if (late < 0)
		fail("fork: %m");
	if (late == 0)
		_exit(zero(a, SMALL * page) && zero(b, SMALL * page) && zero(c, BIG * page) ? 0 : 7);
	int status;
	if (waitpid(late, &status, 0) != late || !WIFEXITED(status) || WEXITSTATUS(status))
		fail("a child forked after restore does not see the areas wiped");
	pass();
}
