/* guard_regions: guard pages (MADV_GUARD_INSTALL, Linux 6.13; in file mappings 6.15) in
 * a private anonymous area, a private file mapping and a shared file mapping, 16 pages
 * each of this run's random data, with guards on pages 4-5 and 10; a child forked
 * before the dump inherits them and adds one of its own on page 13 of each. At dump time
 * the pagemap marks guard pages (bit 58): no page of them is copied, each run is
 * recorded as CRIU does (a VMA_AREA_GUARD entry) and installed again on restore.
 * After restore, in both processes: every guard page still faults (SIGSEGV) and shows
 * bit 58, every other page keeps its data (the private file mapping's copied-on-write
 * pages theirs, the others the file's). Skips where the kernel refuses the advice. */
#define _GNU_SOURCE
#include "tree_util.h"
#include <fcntl.h>
#include <setjmp.h>
#include <sys/mman.h>
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

#define PAGES 16
enum { ANON, FILE_PRIVATE, FILE_SHARED, NKIND };
static const char *kinds[] = { "private anonymous", "private file", "shared file" };

static long page;
static uint64_t seed;
static char *areas[NKIND];
static char path[4096];
static sigjmp_buf jump;

static void on_segv(int sig)
{
	(void)sig;
	siglongjmp(jump, 1);
}

static int faults(volatile char *p)
{
	if (sigsetjmp(jump, 1))
		return 1;
	(void)*p;
	return 0;
}

static uint64_t pagemap_entry(const char *p)
{
	int fd = open("/proc/self/pagemap", O_RDONLY);
	uint64_t e = 0;
	if (fd < 0 || pread(fd, &e, 8, (uintptr_t)p / page * 8) != 8)
		e = 0;
	if (fd >= 0)
		close(fd);
	return e;
}

static int is_guard(int who, long pg) { return pg == 4 || pg == 5 || pg == 10 || (who == 1 && pg == 13); }

/* What page `pg` of area `k` holds: the file's data, or (the private file mapping's
 * even pages, rewritten before the fork) data of its own. */
static uint64_t data_seed(int k, long pg)
{
	if (k == ANON)
		return seed + (uint64_t)pg;
	if (k == FILE_PRIVATE && pg % 2 == 0)
		return ~seed + (uint64_t)pg;
	return seed ^ ((uint64_t)(k == FILE_SHARED ? 0x5000 : 0x4000) + (uint64_t)pg);
}

static int check(int who)
{
	int bad = 0;
	for (int k = 0; k < NKIND; k++)
		for (long pg = 0; pg < PAGES; pg++) {
			char *p = areas[k] + pg * page;
			if (is_guard(who, pg)) {
				if (!faults(p)) {
					test_log("%d: %s page %ld is no longer a guard", who, kinds[k], pg);
					bad++;
				}
				if (!(pagemap_entry(p) >> 58 & 1)) {
					test_log("%d: %s page %ld: pagemap bit 58 clear", who, kinds[k], pg);
					bad++;
				}
				continue;
			}
			if (faults(p) || test_check(p, page, data_seed(k, pg)) >= 0) {
				test_log("%d: %s page %ld lost its data", who, kinds[k], pg);
				bad++;
			}
		}
	return bad;
}

static int child(void *arg)
{
	(void)arg;
	for (int k = 0; k < NKIND; k++)
		if (madvise(areas[k] + 13 * page, page, MADV_GUARD_INSTALL))
			CHILD_FAIL("MADV_GUARD_INSTALL in %s memory: %m", kinds[k]);
	if (check(1))
		CHILD_FAIL("state before the dump differs (see above)");
	child_ready();
	test_waitsig();
	int bad = check(1);
	if (bad)
		CHILD_FAIL("%d pages differ (see above)", bad);
	return 0;
}

int main(int argc, char **argv)
{
	test_init("guard_regions", argc, argv);
	page = sysconf(_SC_PAGESIZE);
	seed = test_rand64();
	test_path(path, sizeof(path), "guard_regions.data");
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		fail("open %s: %m", path);
	char *buf = malloc(page);
	for (int k = FILE_PRIVATE; k <= FILE_SHARED; k++)
		for (long pg = 0; pg < PAGES; pg++) {
			test_fill(buf, page, seed ^ ((uint64_t)(k == FILE_SHARED ? 0x5000 : 0x4000) + (uint64_t)pg));
			if (pwrite(fd, buf, page, ((k - FILE_PRIVATE) * PAGES + pg) * page) != page)
				fail("write: %m");
		}
	areas[ANON] = mmap(NULL, PAGES * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	areas[FILE_PRIVATE] = mmap(NULL, PAGES * page, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	areas[FILE_SHARED] = mmap(NULL, PAGES * page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, PAGES * page);
	for (int k = 0; k < NKIND; k++)
		if (areas[k] == MAP_FAILED)
			fail("mmap %s: %m", kinds[k]);
	close(fd);
	for (long pg = 0; pg < PAGES; pg++) {
		test_fill(areas[ANON] + pg * page, page, data_seed(ANON, pg));
		if (pg % 2 == 0)
			test_fill(areas[FILE_PRIVATE] + pg * page, page, data_seed(FILE_PRIVATE, pg));
	}
	for (int k = 0; k < NKIND; k++)
		if (madvise(areas[k] + 4 * page, 2 * page, MADV_GUARD_INSTALL) || madvise(areas[k] + 10 * page, page, MADV_GUARD_INSTALL)) {
			if (errno == EINVAL)
				test_skip("MADV_GUARD_INSTALL refused (Linux 6.13; in file mappings 6.15)");
			fail("MADV_GUARD_INSTALL in %s memory: %m", kinds[k]);
		}
	if (!(pagemap_entry(areas[ANON] + 4 * page) >> 58 & 1))
		test_skip("the pagemap does not mark guard pages (bit 58, Linux 6.15)");
	struct sigaction action = { .sa_handler = on_segv, .sa_flags = SA_NODEFER };
	sigaction(SIGSEGV, &action, NULL);
	if (check(0))
		fail("state before the dump differs (see log)");
	pid_t kid = fork_child(child, NULL);
	test_ready();
	test_waitsig();
	int bad = check(0);
	if (reap_ok(kid))
		fail("child failed (see log)");
	if (bad)
		fail("%d pages differ in the parent (see log)", bad);
	unlink(path);
	pass();
}
