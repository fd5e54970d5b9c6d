/* madv_state: madvise and mlock state of areas of every kind, in a parent and in a
 * child forked before the dump. One 8-page area per advice and kind of memory (private
 * anonymous, private file, shared anonymous, shared file), each with this run's random
 * data: MADV_DONTFORK (dc), MADV_HUGEPAGE (hg), MADV_NOHUGEPAGE (nh), MADV_DONTDUMP (dd),
 * MADV_SEQUENTIAL (sr), MADV_RANDOM (rr), and MADV_WIPEONFORK (wf, private anonymous
 * only); plus an mlocked area (lo). The child has every area but the DONTFORK ones (the
 * wipe-on-fork one zeroed, no lock: fork does not pass them on) and rewrites the first
 * half of each private one, so its areas are premapped, shared with the parent.
 * After restore each process checks every area's VmFlags (the harness compares them
 * too) and its data. */
#define _GNU_SOURCE
#include "tree_util.h"
#include <fcntl.h>
#include <sys/mman.h>

struct advice {
	int advice;
	const char *flag;
};
static const struct advice advices[] = {
	{ MADV_DONTFORK, "dc" }, { MADV_HUGEPAGE, "hg" }, { MADV_NOHUGEPAGE, "nh" }, { MADV_DONTDUMP, "dd" },
	{ MADV_SEQUENTIAL, "sr" }, { MADV_RANDOM, "rr" }, { MADV_WIPEONFORK, "wf" },
};
#define NADV (int)(sizeof(advices) / sizeof(advices[0]))
enum { ANON, FILE_PRIVATE, ANON_SHARED, FILE_SHARED, NKIND };
static const char *kinds[] = { "private anonymous", "private file", "shared anonymous", "shared file" };
#define PAGES 8

static long page;
static uint64_t seed;
static char *areas[NKIND][NADV];
static char *locked;
static char path[4096];

static int is_private(int k) { return k == ANON || k == FILE_PRIVATE; }
static uint64_t area_seed(int k, int i, int who) { return seed + (uint64_t)(k * 100 + i) + (uint64_t)who * 0x10000; }

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

static int has_flag(const void *addr, const char *flag)
{
	char flags[1100], padded[16];
	vm_flags_of(addr, flags, sizeof(flags));
	snprintf(padded, sizeof(padded), " %s ", flag);
	return strstr(flags, padded) != NULL;
}

static void build(void)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, 2L * NADV * PAGES * page))
		fail("file %s: %m", path);
	for (int k = 0; k < NKIND; k++)
		for (int i = 0; i < NADV; i++) {
			if (advices[i].advice == MADV_WIPEONFORK && k != ANON)
				continue;
			int file = k == FILE_PRIVATE || k == FILE_SHARED;
			int flags = (is_private(k) ? MAP_PRIVATE : MAP_SHARED) | (file ? 0 : MAP_ANONYMOUS);
			off_t offset = file ? ((k == FILE_SHARED ? NADV : 0) + i) * PAGES * page : 0;
			/* One page more, unmapped again: a hole keeps it from merging with the next. */
			char *a = mmap(NULL, (PAGES + 1) * page, PROT_READ | PROT_WRITE, flags, file ? fd : -1, offset);
			if (a == MAP_FAILED)
				fail("mmap %s: %m", kinds[k]);
			munmap(a + PAGES * page, page);
			test_fill(a, PAGES * page, area_seed(k, i, 0));
			if (madvise(a, PAGES * page, advices[i].advice))
				fail("madvise %s on %s memory: %m", advices[i].flag, kinds[k]);
			areas[k][i] = a;
		}
	close(fd);
	locked = mmap(NULL, (PAGES + 1) * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (locked == MAP_FAILED)
		fail("mmap: %m");
	munmap(locked + PAGES * page, page);
	test_fill(locked, PAGES * page, seed ^ 0x10c4);
	if (mlock(locked, PAGES * page))
		fail("mlock: %m");
}

/* 0 when every area of process `who` (0: parent, 1: child) has its flags and data. */
static int check(int who)
{
	int bad = 0;
	for (int k = 0; k < NKIND; k++)
		for (int i = 0; i < NADV; i++) {
			char *a = areas[k][i];
			if (!a || (who == 1 && advices[i].advice == MADV_DONTFORK))
				continue;
			if (!has_flag(a, advices[i].flag)) {
				test_log("%d: %s area lost %s", who, kinds[k], advices[i].flag);
				bad++;
			}
			long half = PAGES / 2 * page;
			if (who == 1 && advices[i].advice == MADV_WIPEONFORK) {
				/* Zeroed at the fork; the child wrote its first half. */
				int zero = 1;
				for (long b = half; b < PAGES * page; b++)
					zero &= a[b] == 0;
				if (test_check(a, half, area_seed(k, i, 1)) >= 0 || !zero) {
					test_log("%d: %s area with %s lost its data", who, kinds[k], advices[i].flag);
					bad++;
				}
				continue;
			}
			int own = who == 1 && is_private(k);
			if (own && test_check(a, half, area_seed(k, i, 1)) >= 0) {
				test_log("%d: %s area with %s: own half lost", who, kinds[k], advices[i].flag);
				bad++;
			}
			for (long pg = own ? PAGES / 2 : 0; pg < PAGES; pg++)
				for (long j = 0; j < page / 8; j++)
					if (((uint64_t *)(a + pg * page))[j] != test_pattern_word(area_seed(k, i, 0), (uint64_t)(pg * page / 8 + j))) {
						test_log("%d: %s area with %s: page %ld lost its data", who, kinds[k], advices[i].flag, pg);
						bad++;
						pg = PAGES;
						break;
					}
		}
	if (has_flag(locked, "lo") != (who == 0)) {
		test_log("%d: the mlocked area %s", who, who == 0 ? "is no longer locked" : "is locked in the child");
		bad++;
	}
	if (test_check(locked, PAGES * page, seed ^ 0x10c4) >= 0) {
		test_log("%d: the mlocked area lost its data", who);
		bad++;
	}
	return bad;
}

static int child(void *arg)
{
	(void)arg;
	for (int k = 0; k < NKIND; k++)
		for (int i = 0; i < NADV; i++)
			if (areas[k][i] && is_private(k) && advices[i].advice != MADV_DONTFORK)
				test_fill(areas[k][i], PAGES / 2 * page, area_seed(k, i, 1));
	child_ready();
	test_waitsig();
	int bad = check(1);
	if (bad)
		CHILD_FAIL("%d areas differ (see above)", bad);
	return 0;
}

int main(int argc, char **argv)
{
	test_init("madv_state", argc, argv);
	page = sysconf(_SC_PAGESIZE);
	seed = test_rand64();
	test_path(path, sizeof(path), "madv_state.data");
	build();
	if (check(0))
		fail("state before the dump differs (see log)");
	pid_t kid = fork_child(child, NULL);
	test_ready();
	test_waitsig();
	int bad = check(0);
	if (reap_ok(kid))
		fail("child failed (see log)");
	if (bad)
		fail("%d areas differ in the parent (see log)", bad);
	unlink(path);
	pass();
}
