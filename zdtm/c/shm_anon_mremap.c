/* shm_anon_mremap: one shared anonymous object (MAP_SHARED|MAP_ANONYMOUS, 64 pages)
 * whose users reshape their own views of it, so that some of its pages are mapped by no
 * page table at dump time and live only in the object:
 * - the parent writes pgoff 0-7 and 56-63, then drops 56-63 from its page table
 *   (MADV_DONTNEED: the object keeps them, as under reclaim);
 * - child 1 moves its view of pgoff 16-31 elsewhere while growing it to pgoff 16-47
 *   (mremap MAYMOVE), writes pgoff 16-47, then shrinks the moved view to pgoff 16-23:
 *   pgoff 24-47 hold its data but nobody maps them;
 * - child 2 moves its view of pgoff 48-51 and grows it to 48-55, writes them and keeps
 *   that view.
 * After restore the parent checks every page through its full view (random data of
 * this run, zeros where nobody wrote), each child checks its own views, and the three
 * still share the object: the parent writes a token into pgoff 2 before it forwards
 * SIGTERM to a child, the child must see it and answers with a token of its own in a
 * page it maps, which the parent must see once the child has exited. */
#define _GNU_SOURCE
#include "tree_util.h"
#include <sys/mman.h>

#define NP 64

static uint64_t seed;
static char *area;
static long page;

/* What process `who` (0: parent, 1, 2: children) writes into pgoff `pg`, word `j`. */
static uint64_t word(int who, long pg, long j)
{
	return test_pattern_word(seed + (uint64_t)who * 1000 + (uint64_t)pg, (uint64_t)j);
}

static void fill(char *p, int who, long pg)
{
	for (long j = 0; j < page / 8; j++)
		((uint64_t *)p)[j] = word(who, pg, j);
}

/* 0 when page `p` (pgoff `pg`) holds what `who` wrote (who < 0: zeros). */
static int check(const char *p, int who, long pg)
{
	for (long j = 0; j < page / 8; j++) {
		uint64_t want = who < 0 ? 0 : word(who, pg, j);
		if (((const uint64_t *)p)[j] != want) {
			test_log("pgoff %ld word %ld: %#llx, want %#llx", pg, j,
				 (unsigned long long)((const uint64_t *)p)[j], (unsigned long long)want);
			return -1;
		}
	}
	return 0;
}

/* Who wrote pgoff `pg` last (-1: nobody). */
static int writer(long pg)
{
	if (pg < 8 || pg >= 56)
		return 0;
	if (pg >= 16 && pg < 48)
		return 1;
	if (pg >= 48)
		return 2;
	return -1;
}

static uint64_t token(int who) { return ~seed ^ (0x70c3e110ull + (uint64_t)who); }

static int child(void *arg)
{
	int who = (int)(intptr_t)arg;
	long first = who == 1 ? 16 : 48, moved = who == 1 ? 16 : 4, grown = who == 1 ? 32 : 8, kept = 8;
	char *view = mremap(area + first * page, moved * page, grown * page, MREMAP_MAYMOVE);
	if (view == MAP_FAILED)
		CHILD_FAIL("mremap grow: %m");
	for (long i = 0; i < grown; i++)
		fill(view + i * page, who, first + i);
	if (kept != grown && mremap(view, grown * page, kept * page, 0) != view)
		CHILD_FAIL("mremap shrink: %m");
	child_ready();
	test_waitsig();
	/* The parent wrote its token before it forwarded SIGTERM. */
	uint64_t seen = *(volatile uint64_t *)(area + 2 * page);
	if (seen != token(0))
		CHILD_FAIL("pgoff 2 holds %#llx, not the parent's token: no longer one object", (unsigned long long)seen);
	for (long i = 0; i < kept; i++)
		if (check(view + i * page, who, first + i))
			CHILD_FAIL("own view of pgoff %ld lost its data", first + i);
	/* pgoff 4-7 through the view inherited from the parent. */
	for (long pg = 4; pg < 8; pg++)
		if (check(area + pg * page, 0, pg))
			CHILD_FAIL("pgoff %ld through the inherited view", pg);
	*(volatile uint64_t *)(view + 4 * page) = token(who); /* pgoff first + 4 */
	return 0;
}

int main(int argc, char **argv)
{
	test_init("shm_anon_mremap", argc, argv);
	seed = test_rand64();
	page = sysconf(_SC_PAGESIZE);
	area = mmap(NULL, NP * page, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED)
		fail("mmap: %m");
	for (long pg = 0; pg < NP; pg++)
		if (writer(pg) == 0)
			fill(area + pg * page, 0, pg);
	if (madvise(area + 56 * page, 8 * page, MADV_DONTNEED))
		fail("MADV_DONTNEED: %m");
	pid_t kids[2];
	for (int k = 0; k < 2; k++)
		kids[k] = fork_child(child, (void *)(intptr_t)(k + 1));
	/* Nothing the children wrote is in the parent's page table. */
	test_ready();
	test_waitsig();

	int bad = 0;
	for (long pg = 0; pg < NP; pg++)
		if (check(area + pg * page, writer(pg), pg))
			bad++;
	if (bad)
		fail("%d of %d pages of the object differ in the parent's view (see log)", bad, NP);
	*(volatile uint64_t *)(area + 2 * page) = token(0);
	for (int k = 0; k < 2; k++) {
		if (reap_ok(kids[k]))
			fail("child %d failed (see log)", k + 1);
		long pg = k == 0 ? 20 : 52;
		uint64_t seen = *(volatile uint64_t *)(area + pg * page);
		if (seen != token(k + 1))
			fail("pgoff %ld holds %#llx, not child %d's token: no longer one object", pg, (unsigned long long)seen, k + 1);
	}
	pass();
}
