/* shm_stress: shared memory written by four processes while they are dumped. The root,
 * two children and a grandchild share
 * - S1, an anonymous MAP_SHARED object of 4 stripes of 256 pages, one per process; every
 *   process but the root moved its view of its own stripe elsewhere with mremap
 *   (MAYMOVE), shrank it and grew it back (within the object);
 * - S2, a memfd mapped MAP_SHARED: one mailbox per process;
 * - S3, an unlinked file mapped MAP_SHARED: one ledger page per process; the root holds
 *   the fd it was created with, each child a description of its own, opened through
 *   /proc/self/fd after the unlink.
 * A token goes around a ring of pipes, so exactly one process writes at any moment and
 * the tree is always busy (no sleeps: every wait is a pipe read). The holder checks that
 * the next 16 pages of its stripe still hold the generation it last wrote there (from a
 * private table), writes a new generation into every word (a function of this run's
 * seed, owner, page, generation and word), records it, stores it in its mailbox and its
 * ledger (even processes through the mapping, odd ones with pwrite on their own
 * description), and even processes then drop those pages from their page tables
 * (MADV_DONTNEED: the data lives only in the object). The next holder first checks its
 * predecessor's mailbox, ledger (through the mapping and with pread) and last page
 * through its own view, then drops its page-table entries of that stripe.
 * SIGTERM to the root: STOP goes around the ring, then REPORT; each process checks its
 * whole stripe against its table and sends the table, its error count and first error
 * to the root over a pipe; the root checks every stripe through its full view.
 * Run with --iters 10, --snap and --pre-dump: between a pre-dump and its dump, and
 * between iterations, the processes keep writing. */
#define _GNU_SOURCE
#include "tree_util.h"
#include <fcntl.h>
#include <stdarg.h>
#include <sys/mman.h>

#define NPROC 4
#define STRIPE 256
#define WINDOW 16

enum { ROUND = 1, STOP = 2, REPORT = 3 };
struct token {
	uint32_t kind, from;
	uint64_t gen, page;
};
struct mailbox {
	uint64_t gen, pad[7];
};
struct report {
	uint64_t table[STRIPE];
	uint64_t errors, rounds;
	int bad_pages;
	char first_error[256];
};

static long page;
static uint64_t seed;
static char *s1;  /* the full view, as mapped before the forks */
static char *own; /* this process's view of its own stripe */
static struct mailbox *s2;
static char *s3;
static int ledger_fd;
static int me;
static int ring[NPROC][2], reports[NPROC][2];
static struct report mine;
static uint64_t gen, next_page;

static uint64_t word(int owner, uint64_t pg, uint64_t g, uint64_t j)
{
	return test_pattern_word(seed ^ ((uint64_t)owner << 56) ^ (g << 20) ^ pg, j);
}

static void note_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note_error(const char *fmt, ...)
{
	if (!mine.errors++) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(mine.first_error, sizeof(mine.first_error), fmt, ap);
		va_end(ap);
	}
}

/* -1 when page `pg` of `owner`'s stripe (at `p`) holds generation `g`, else the bad word. */
static long check_page(const char *p, int owner, uint64_t pg, uint64_t g)
{
	const uint64_t *w = (const uint64_t *)p;
	for (long j = 0; j < page / 8; j++)
		if (w[j] != word(owner, pg, g, (uint64_t)j))
			return j;
	return -1;
}

static uint64_t *ledger(int who) { return (uint64_t *)(s3 + (long)who * page); }

static void write_round(void)
{
	gen++;
	for (int k = 0; k < WINDOW; k++) {
		uint64_t pg = (next_page + k) % STRIPE;
		uint64_t *w = (uint64_t *)(own + pg * page);
		long bad = check_page((char *)w, me, pg, mine.table[pg]);
		if (bad >= 0)
			note_error("round %llu: own page %llu: word %ld is %#llx, not generation %llu", (unsigned long long)gen,
			      (unsigned long long)pg, bad, (unsigned long long)w[bad], (unsigned long long)mine.table[pg]);
		for (long j = 0; j < page / 8; j++)
			w[j] = word(me, pg, gen, (uint64_t)j);
		mine.table[pg] = gen;
	}
	/* Even processes drop their PTEs, odd ones keep them: both kinds of page are dumped. */
	if (!(me & 1))
		for (int k = 0; k < WINDOW; k++)
			madvise(own + ((next_page + k) % STRIPE) * page, page, MADV_DONTNEED);
	s2[me].gen = gen;
	uint64_t entry = gen ^ seed;
	if (me & 1) {
		if (pwrite(ledger_fd, &entry, 8, (off_t)me * page) != 8)
			note_error("round %llu: pwrite into the ledger: %m", (unsigned long long)gen);
	} else {
		*(volatile uint64_t *)ledger(me) = entry;
	}
	next_page = (next_page + WINDOW) % STRIPE;
}

static void check_predecessor(const struct token *t)
{
	int q = (int)t->from;
	if (s2[q].gen != t->gen)
		note_error("round %llu: mailbox of %d holds %llu, the token says %llu", (unsigned long long)gen, q,
		      (unsigned long long)s2[q].gen, (unsigned long long)t->gen);
	uint64_t mapped = *(volatile uint64_t *)ledger(q), got = 0;
	if (pread(ledger_fd, &got, 8, (off_t)q * page) != 8 || mapped != (t->gen ^ seed) || got != mapped)
		note_error("round %llu: ledger of %d: %#llx mapped, %#llx read, not generation %llu", (unsigned long long)gen, q,
		      (unsigned long long)mapped, (unsigned long long)got, (unsigned long long)t->gen);
	const char *p = s1 + ((uint64_t)q * STRIPE + t->page) * page;
	long bad = check_page(p, q, t->page, t->gen);
	if (bad >= 0)
		note_error("round %llu: page %llu of %d's stripe: word %ld is %#llx, not generation %llu", (unsigned long long)gen,
		      (unsigned long long)t->page, q, bad, (unsigned long long)((const uint64_t *)p)[bad],
		      (unsigned long long)t->gen);
	/* A read fault maps its neighbours too (fault-around): drop the whole stripe. */
	madvise(s1 + (uint64_t)q * STRIPE * page, STRIPE * page, MADV_DONTNEED);
}

static void send_token(struct token t)
{
	int next = (me + 1) % NPROC;
	if (write(ring[next][1], &t, sizeof(t)) != sizeof(t))
		_exit(90);
}

static void receive(struct token *t)
{
	for (;;) {
		ssize_t n = read(ring[me][0], t, sizeof(*t));
		if (n == sizeof(*t))
			return;
		if (n < 0 && errno == EINTR)
			continue;
		_exit(91);
	}
}

static struct token round_token(void)
{
	return (struct token){ ROUND, (uint32_t)me, gen, (next_page + STRIPE - 1) % STRIPE };
}

/* Passes the token until REPORT has come around. */
static void run(void)
{
	struct token t;
	if (me == 0) {
		write_round();
		send_token(round_token());
	}
	for (;;) {
		receive(&t);
		if (t.kind == ROUND) {
			check_predecessor(&t);
			if (me == 0 && test_sig_received()) {
				send_token((struct token){ STOP, 0, 0, 0 });
				continue;
			}
			write_round();
			send_token(round_token());
		} else if (t.kind == STOP) {
			send_token(me == 0 ? (struct token){ REPORT, 0, 0, 0 } : t);
		} else if (t.kind == REPORT) {
			if (me != 0)
				send_token(t);
			return;
		}
	}
}

/* The own stripe's pages that differ from the table. */
static int own_check(void)
{
	int bad = 0;
	for (uint64_t pg = 0; pg < STRIPE; pg++)
		if (check_page(own + pg * page, me, pg, mine.table[pg]) >= 0)
			bad++;
	return bad;
}

/* Moves this process's view of its own stripe elsewhere, shrinks it, grows it back. */
static void reshape_own_view(void)
{
	own = s1 + (uint64_t)me * STRIPE * page;
	char *v = mremap(own, STRIPE * page, STRIPE * page, MREMAP_MAYMOVE);
	if (v == MAP_FAILED)
		_exit(80);
	char *far = mmap(NULL, STRIPE * page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	/* Somewhere else indeed: a fixed move into a reservation. */
	if (far == MAP_FAILED || mremap(v, STRIPE * page, STRIPE * page, MREMAP_MAYMOVE | MREMAP_FIXED, far) != far)
		_exit(81);
	if (mremap(far, STRIPE * page, STRIPE / 2 * page, 0) != far)
		_exit(82);
	own = mremap(far, STRIPE / 2 * page, STRIPE * page, MREMAP_MAYMOVE);
	if (own == MAP_FAILED)
		_exit(83);
}

static int participant(void *arg);

static int child_main(int who)
{
	me = who;
	char self[64];
	snprintf(self, sizeof(self), "/proc/self/fd/%d", ledger_fd);
	int fd = open(self, O_RDWR);
	if (fd < 0)
		CHILD_FAIL("open %s: %m", self);
	close(ledger_fd);
	ledger_fd = fd;
	pid_t grandchild = 0;
	if (me == 1)
		grandchild = fork_child(participant, (void *)(intptr_t)3);
	reshape_own_view();
	child_ready();
	run();
	mine.bad_pages = own_check();
	mine.rounds = gen;
	if (write(reports[me][1], &mine, sizeof(mine)) != sizeof(mine))
		CHILD_FAIL("write report: %m");
	if (grandchild) {
		int status;
		if (waitpid(grandchild, &status, 0) != grandchild || !WIFEXITED(status) || WEXITSTATUS(status))
			CHILD_FAIL("grandchild %d ended with %#x", grandchild, status);
	}
	return 0;
}

static int participant(void *arg) { return child_main((int)(intptr_t)arg); }

int main(int argc, char **argv)
{
	test_init("shm_stress", argc, argv);
	page = sysconf(_SC_PAGESIZE);
	seed = test_rand64();
	s1 = mmap(NULL, NPROC * STRIPE * page, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	int mfd = memfd_create("shm_stress", 0);
	if (s1 == MAP_FAILED || mfd < 0 || ftruncate(mfd, NPROC * sizeof(struct mailbox)))
		fail("S1 or S2: %m");
	s2 = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	close(mfd);
	char path[4096];
	test_path(path, sizeof(path), "shm_stress.ledger");
	unlink(path);
	ledger_fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
	if (ledger_fd < 0 || ftruncate(ledger_fd, NPROC * page))
		fail("S3 %s: %m", path);
	s3 = mmap(NULL, NPROC * page, PROT_READ | PROT_WRITE, MAP_SHARED, ledger_fd, 0);
	if (s2 == MAP_FAILED || s3 == MAP_FAILED)
		fail("mmap: %m");
	if (unlink(path))
		fail("unlink %s: %m", path);
	for (int p = 0; p < NPROC; p++) {
		if (pipe(ring[p]) || pipe(reports[p]))
			fail("pipe: %m");
		for (uint64_t pg = 0; pg < STRIPE; pg++) {
			char *at = s1 + ((uint64_t)p * STRIPE + pg) * page;
			for (long j = 0; j < page / 8; j++)
				((uint64_t *)at)[j] = word(p, pg, 0, (uint64_t)j);
		}
		s2[p].gen = 0;
		*ledger(p) = seed;
	}
	/* Nobody keeps PTEs of the first contents. */
	madvise(s1, NPROC * STRIPE * page, MADV_DONTNEED);
	pid_t kids[3];
	kids[1] = fork_child(participant, (void *)(intptr_t)1);
	kids[2] = fork_child(participant, (void *)(intptr_t)2);
	me = 0;
	own = s1;
	test_ready();
	run();

	int bad = own_check();
	if (bad)
		test_log("root: %d pages of its own stripe differ from its table", bad);
	if (mine.errors)
		test_log("root: %llu errors, first: %s", (unsigned long long)mine.errors, mine.first_error);
	int failures = bad + (mine.errors != 0);
	static struct report theirs;
	for (int p = 1; p < NPROC; p++) {
		if (read(reports[p][0], &theirs, sizeof(theirs)) != sizeof(theirs))
			fail("no report from process %d", p);
		if (theirs.errors)
			test_log("process %d: %llu errors, first: %s", p, (unsigned long long)theirs.errors, theirs.first_error);
		if (theirs.bad_pages)
			test_log("process %d: %d pages of its stripe differ from its table in its own view", p, theirs.bad_pages);
		int differ = 0;
		for (uint64_t pg = 0; pg < STRIPE; pg++) {
			const char *at = s1 + ((uint64_t)p * STRIPE + pg) * page;
			long w = check_page(at, p, pg, theirs.table[pg]);
			if (w >= 0 && differ++ < 2)
				test_log("root's view: page %llu of %d's stripe: word %ld is %#llx, want generation %llu",
					 (unsigned long long)pg, p, w, (unsigned long long)((const uint64_t *)at)[w],
					 (unsigned long long)theirs.table[pg]);
		}
		if (differ)
			test_log("root's view: %d pages of %d's stripe differ from its table", differ, p);
		failures += differ + theirs.bad_pages + (theirs.errors != 0);
	}
	for (int p = 1; p <= 2; p++) {
		int status;
		if (waitpid(kids[p], &status, 0) != kids[p] || !WIFEXITED(status) || WEXITSTATUS(status)) {
			test_log("process %d ended with %#x", p, status);
			failures++;
		}
	}
	test_log("%llu rounds of the root", (unsigned long long)gen);
	if (failures)
		fail("shared memory differs after %llu rounds of the root (see log)", (unsigned long long)gen);
	pass();
}
