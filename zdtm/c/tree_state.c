/* tree_state: `tree_state MODE`: per-process state that differs between a parent and its
 * child, each side checked by itself after the restore.
 *   shm       MAP_SHARED anonymous memory inherited through fork is still one object:
 *             after the restore the parent writes and the child sees it, and back
 *   cow       private pages shared copy-on-write: each side keeps its own copy
 *   creds     the child has other uid/gid sets, groups and capabilities (root)
 *   prctl     the child has its own name, dumpable, pdeathsig, child_subreaper,
 *             no_new_privs and THP disable
 *   misc      the child has its own umask, rlimits, personality and oom_score_adj
 *   itimers   parent and child with different ITIMER_REAL/VIRTUAL/PROF values
 *   posix_timers  timer_create timers (ids, intervals) in parent and child */
#include "tree_util.h"
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>

enum { SHM_BYTES = 4 << 20 };
static volatile uint64_t *shm;
static uint64_t *cow;
static uint64_t seed;

/* Everything a process of this test records and compares. */
struct state {
	uid_t r, e, s;
	gid_t rg, eg, sg;
	int ngroups;
	gid_t groups[32];
	uint64_t caps[3];
	char name[16];
	int dumpable, pdeathsig, subreaper, nnp, thp;
	mode_t umask;
	struct rlimit nofile, core, stack;
	int personality;
	char oom[32];
	struct itimerval timers[3];
	timer_t posix[3];
	struct itimerspec posix_spec[3];
};

static void read_caps(uint64_t caps[3])
{
	struct __user_cap_header_struct header = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[2];
	syscall(SYS_capget, &header, data);
	caps[0] = data[0].effective | (uint64_t)data[1].effective << 32;
	caps[1] = data[0].permitted | (uint64_t)data[1].permitted << 32;
	caps[2] = data[0].inheritable | (uint64_t)data[1].inheritable << 32;
}

static void read_oom(char *buf, size_t size)
{
	int fd = open("/proc/self/oom_score_adj", O_RDONLY);
	ssize_t n = fd >= 0 ? read(fd, buf, size - 1) : -1;
	buf[n > 0 ? n : 0] = 0;
	if (fd >= 0)
		close(fd);
}

static void capture(struct state *st, const char *mode)
{
	memset(st, 0, sizeof(*st));
	getresuid(&st->r, &st->e, &st->s);
	getresgid(&st->rg, &st->eg, &st->sg);
	st->ngroups = getgroups(32, st->groups);
	read_caps(st->caps);
	prctl(PR_GET_NAME, st->name);
	st->dumpable = prctl(PR_GET_DUMPABLE);
	prctl(PR_GET_PDEATHSIG, &st->pdeathsig);
	prctl(PR_GET_CHILD_SUBREAPER, &st->subreaper);
	st->nnp = prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0);
	st->thp = prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0);
	st->umask = umask(0);
	umask(st->umask);
	getrlimit(RLIMIT_NOFILE, &st->nofile);
	getrlimit(RLIMIT_CORE, &st->core);
	getrlimit(RLIMIT_STACK, &st->stack);
	st->personality = personality(0xffffffff);
	read_oom(st->oom, sizeof(st->oom));
	if (!strcmp(mode, "itimers"))
		for (int i = 0; i < 3; i++)
			getitimer(i, &st->timers[i]);
}

/* Returns a description of the first difference, or NULL. */
static const char *compare(const struct state *a, const struct state *b, const char *mode, char *why, size_t size)
{
#define DIFF(cond, ...) do { if (cond) { snprintf(why, size, __VA_ARGS__); return why; } } while (0)
	DIFF(a->r != b->r || a->e != b->e || a->s != b->s, "uids %d/%d/%d, were %d/%d/%d", b->r, b->e, b->s, a->r, a->e, a->s);
	DIFF(a->rg != b->rg || a->eg != b->eg || a->sg != b->sg, "gids %d/%d/%d, were %d/%d/%d", b->rg, b->eg, b->sg, a->rg, a->eg, a->sg);
	DIFF(a->ngroups != b->ngroups || memcmp(a->groups, b->groups, sizeof(gid_t) * (a->ngroups > 0 ? a->ngroups : 0)), "groups changed (%d -> %d)", a->ngroups, b->ngroups);
	DIFF(memcmp(a->caps, b->caps, sizeof(a->caps)), "caps eff/prm/inh %lx/%lx/%lx, were %lx/%lx/%lx", (long)b->caps[0], (long)b->caps[1], (long)b->caps[2], (long)a->caps[0], (long)a->caps[1], (long)a->caps[2]);
	DIFF(strcmp(a->name, b->name), "name %s, was %s", b->name, a->name);
	DIFF(a->dumpable != b->dumpable, "dumpable %d, was %d", b->dumpable, a->dumpable);
	DIFF(a->pdeathsig != b->pdeathsig, "pdeathsig %d, was %d", b->pdeathsig, a->pdeathsig);
	DIFF(a->subreaper != b->subreaper, "child_subreaper %d, was %d", b->subreaper, a->subreaper);
	DIFF(a->nnp != b->nnp, "no_new_privs %d, was %d", b->nnp, a->nnp);
	DIFF(a->thp != b->thp, "THP disable %d, was %d", b->thp, a->thp);
	DIFF(a->umask != b->umask, "umask %o, was %o", b->umask, a->umask);
	DIFF(a->nofile.rlim_cur != b->nofile.rlim_cur || a->nofile.rlim_max != b->nofile.rlim_max, "RLIMIT_NOFILE %lu/%lu, was %lu/%lu", b->nofile.rlim_cur, b->nofile.rlim_max, a->nofile.rlim_cur, a->nofile.rlim_max);
	DIFF(a->core.rlim_cur != b->core.rlim_cur || a->core.rlim_max != b->core.rlim_max, "RLIMIT_CORE changed");
	DIFF(a->stack.rlim_cur != b->stack.rlim_cur, "RLIMIT_STACK changed");
	DIFF(a->personality != b->personality, "personality %#x, was %#x", b->personality, a->personality);
	DIFF(strcmp(a->oom, b->oom), "oom_score_adj %s, was %s", b->oom, a->oom);
	if (!strcmp(mode, "itimers"))
		for (int i = 0; i < 3; i++) {
			DIFF(a->timers[i].it_interval.tv_sec != b->timers[i].it_interval.tv_sec || a->timers[i].it_interval.tv_usec != b->timers[i].it_interval.tv_usec,
			     "itimer %d interval %ld.%06ld, was %ld.%06ld", i, b->timers[i].it_interval.tv_sec, b->timers[i].it_interval.tv_usec, a->timers[i].it_interval.tv_sec, a->timers[i].it_interval.tv_usec);
			long before = a->timers[i].it_value.tv_sec * 1000000 + a->timers[i].it_value.tv_usec;
			long after = b->timers[i].it_value.tv_sec * 1000000 + b->timers[i].it_value.tv_usec;
			/* CPU-time timers are kept in ticks: allow one 10 ms tick of rounding. */
			DIFF(after > before + 10000 || after <= 0 || (i == 0 && before - after > 600 * 1000000L), "itimer %d value %ldus, was %ldus", i, after, before);
		}
	return NULL;
#undef DIFF
}

static void set_caps(uint64_t drop)
{
	uint64_t caps[3];
	read_caps(caps);
	struct __user_cap_header_struct header = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[2];
	for (int i = 0; i < 2; i++) {
		data[i].effective = (uint32_t)((caps[0] & ~drop) >> (32 * i));
		data[i].permitted = (uint32_t)((caps[1] & ~drop) >> (32 * i));
		data[i].inheritable = (uint32_t)((caps[1] & ~drop & 0xff) >> (32 * i));
	}
	syscall(SYS_capset, &header, data);
}

/* Makes this process's state different: `side` 0 parent, 1 child. */
static int diverge(const char *mode, int side, uint64_t r)
{
	if (!strcmp(mode, "creds") && side) {
		gid_t groups[4] = { 2000 + r % 100, 3000 + (r >> 8) % 100, 4000, 5000 + side };
		if (setgroups(4, groups))
			return -1;
		/* Keep CAP_SETUID/SETGID (6, 7), DAC_OVERRIDE (1) and FOWNER (3) to finish. */
		uint64_t drop = (r >> 16) & ~((1ULL << 1) | (1ULL << 3) | (1ULL << 6) | (1ULL << 7)) & ((1ULL << 38) - 1) & ~1ULL;
		set_caps(drop);
		if (setresgid(100 + r % 50, 200 + r % 50, 0))
			return -1;
		prctl(PR_SET_KEEPCAPS, 1);
		if (setresuid(0, 0, 1000 + r % 100))
			return -1;
	}
	if (!strcmp(mode, "prctl")) {
		char name[16];
		snprintf(name, sizeof(name), "%s-%06x", side ? "kid" : "dad", (unsigned)(r & 0xffffff));
		prctl(PR_SET_NAME, name);
		if (side) {
			prctl(PR_SET_DUMPABLE, 0);
			prctl(PR_SET_PDEATHSIG, SIGUSR2 + (int)(r % 3));
			prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
			prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0);
		} else {
			prctl(PR_SET_CHILD_SUBREAPER, 1);
		}
	}
	if (!strcmp(mode, "misc")) {
		umask((r & 077) | (side ? 0 : 0700));
		struct rlimit nofile = { 100 + r % 400 + side, 1000 + r % 1000 };
		struct rlimit core = { side ? 0 : 4096 * (r % 100), side ? 1 << 20 : RLIM_INFINITY };
		setrlimit(RLIMIT_NOFILE, &nofile);
		setrlimit(RLIMIT_CORE, &core);
		personality(side ? ADDR_NO_RANDOMIZE : (READ_IMPLIES_EXEC | ADDR_COMPAT_LAYOUT));
		char value[16];
		int fd = open("/proc/self/oom_score_adj", O_WRONLY);
		int len = snprintf(value, sizeof(value), "%d", side ? (int)(r % 400) : 500 + (int)(r % 400));
		if (fd < 0 || write(fd, value, len) != len)
			return -1;
		close(fd);
	}
	if (!strcmp(mode, "itimers")) {
		signal(SIGALRM, SIG_IGN);
		signal(SIGVTALRM, SIG_IGN);
		signal(SIGPROF, SIG_IGN);
		for (int i = 0; i < 3; i++) {
			struct itimerval value = {
				.it_interval = { 1000 + (r >> (i * 8)) % 1000 + side, 0 },
				.it_value = { 2000 + (r >> (i * 4)) % 1000, 1000 * side + 7 },
			};
			if (setitimer(i, &value, NULL))
				return -1;
		}
	}
	return 0;
}

static int posix_ticker(uint64_t r);

static int posix_timers(struct state *st, uint64_t r)
{
	for (int i = 0; i < 3; i++) {
		struct sigevent event;
		memset(&event, 0, sizeof(event));
		event.sigev_notify = SIGEV_SIGNAL;
		event.sigev_signo = SIGRTMIN + 2 + i;
		event.sigev_value.sival_int = (int)(r >> i);
		signal(event.sigev_signo, SIG_IGN);
		if (timer_create(i == 0 ? CLOCK_REALTIME : i == 1 ? CLOCK_MONOTONIC : CLOCK_BOOTTIME, &event, &st->posix[i]))
			return -1;
		struct itimerspec spec = { { 500 + i, (long)(r % 1000) * 1000 }, { 1000 + i, 0 } };
		if (timer_settime(st->posix[i], 0, &spec, NULL))
			return -1;
		timer_gettime(st->posix[i], &st->posix_spec[i]);
	}
	return posix_ticker(r);
}

/* A fourth timer signals this thread every 10 ms with a blocked signal; a deleted timer
 * before it leaves a gap in the ids. */
static timer_t ticker;
static int ticker_value;

static int posix_ticker(uint64_t r)
{
	timer_t gap;
	struct sigevent event;
	sigset_t block;
	memset(&event, 0, sizeof(event));
	event.sigev_notify = SIGEV_NONE;
	if (timer_create(CLOCK_MONOTONIC, &event, &gap) || timer_delete(gap))
		return -1;
	sigemptyset(&block);
	sigaddset(&block, SIGRTMIN + 6);
	sigprocmask(SIG_BLOCK, &block, NULL);
	ticker_value = (int)(r >> 7) | 1;
	event.sigev_notify = SIGEV_THREAD_ID;
	event.sigev_signo = SIGRTMIN + 6;
	event.sigev_value.sival_int = ticker_value;
	event._sigev_un._tid = (pid_t)syscall(SYS_gettid);
	if (timer_create(CLOCK_MONOTONIC, &event, &ticker))
		return -1;
	struct itimerspec spec = { { 0, 10 * 1000 * 1000 }, { 0, 10 * 1000 * 1000 } };
	return timer_settime(ticker, 0, &spec, NULL);
}

/* Pending ticks may be requeued copies: drain them, then a new one must come from the
 * live timer, with its value and id. */
static const char *check_ticker(char *why, size_t size)
{
	sigset_t set;
	siginfo_t info;
	struct timespec zero = { 0, 0 }, wait = { 10, 0 };
	sigemptyset(&set);
	sigaddset(&set, SIGRTMIN + 6);
	while (sigtimedwait(&set, &info, &zero) > 0)
		;
	if (sigtimedwait(&set, &info, &wait) < 0) {
		snprintf(why, size, "no tick from the 10 ms timer in 10 s: %m");
		return why;
	}
	if (info.si_code != SI_TIMER || info.si_value.sival_int != ticker_value || info.si_timerid != (int)(long)ticker) {
		snprintf(why, size, "tick with code %d value %#x timer %d, expected %d %#x %d", info.si_code, info.si_value.sival_int, info.si_timerid, SI_TIMER,
			 ticker_value, (int)(long)ticker);
		return why;
	}
	return NULL;
}

static const char *check_posix_timers(struct state *st, char *why, size_t size)
{
	if (check_ticker(why, size))
		return why;
	for (int i = 0; i < 3; i++) {
		struct itimerspec now;
		if (timer_gettime(st->posix[i], &now)) {
			snprintf(why, size, "timer %d (id %p) gone: %m", i, st->posix[i]);
			return why;
		}
		if (now.it_interval.tv_sec != st->posix_spec[i].it_interval.tv_sec || now.it_interval.tv_nsec != st->posix_spec[i].it_interval.tv_nsec ||
		    now.it_value.tv_sec > st->posix_spec[i].it_value.tv_sec || (now.it_value.tv_sec == 0 && now.it_value.tv_nsec == 0)) {
			snprintf(why, size, "timer %d: interval %ld.%09ld value %ld, was %ld.%09ld value %ld", i, now.it_interval.tv_sec, now.it_interval.tv_nsec, now.it_value.tv_sec,
				 st->posix_spec[i].it_interval.tv_sec, st->posix_spec[i].it_interval.tv_nsec, st->posix_spec[i].it_value.tv_sec);
			return why;
		}
	}
	return NULL;
}

static const char *mode;

static const char *check_memory(int side, char *why, size_t size)
{
	if (!strcmp(mode, "cow")) {
		long bad = test_check(cow, SHM_BYTES, seed + side);
		if (bad != -1) {
			snprintf(why, size, "copy-on-write page at offset %ld has the other side's data", bad);
			return why;
		}
	}
	return NULL;
}

static int child(void *arg)
{
	struct state before, after;
	uint64_t r = test_rand64();
	if (diverge(mode, 1, r))
		CHILD_FAIL("set up %s: %m", mode);
	if (!strcmp(mode, "posix_timers") && posix_timers(&before, r))
		CHILD_FAIL("timer_create: %m");
	if (!strcmp(mode, "cow"))
		test_fill(cow, SHM_BYTES, seed + 1);
	timer_t keep[3];
	struct itimerspec keep_spec[3];
	memcpy(keep, before.posix, sizeof(keep));
	memcpy(keep_spec, before.posix_spec, sizeof(keep_spec));
	capture(&before, mode);
	memcpy(before.posix, keep, sizeof(keep));
	memcpy(before.posix_spec, keep_spec, sizeof(keep_spec));
	child_ready();
	test_waitsig();
	char why[256];
	capture(&after, mode);
	if (compare(&before, &after, mode, why, sizeof(why)))
		CHILD_FAIL("%s", why);
	if (!strcmp(mode, "posix_timers") && check_posix_timers(&before, why, sizeof(why)))
		CHILD_FAIL("%s", why);
	if (check_memory(1, why, sizeof(why)))
		CHILD_FAIL("%s", why);
	if (!strcmp(mode, "shm")) {
		/* The parent wrote a new pattern after the restore, then signalled us. */
		uint64_t now = shm[0];
		if (test_check((const void *)(shm + 8), SHM_BYTES - 64, now) != -1)
			CHILD_FAIL("shared mapping: parent's write after restore not seen");
		test_fill((void *)(shm + 8), SHM_BYTES - 64, now + 1);
		shm[1] = now + 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	test_init("tree_state", argc, argv);
	mode = argc > 1 ? argv[1] : "shm";
	seed = test_rand64();
	shm = mmap(NULL, SHM_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cow = mmap(NULL, SHM_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (shm == MAP_FAILED || cow == MAP_FAILED)
		fail("mmap: %m");
	test_fill((void *)shm, SHM_BYTES, seed);
	test_fill(cow, SHM_BYTES, seed);
	struct state before, after;
	pid_t kid = fork_child(child, NULL);
	uint64_t r = test_rand64();
	if (diverge(mode, 0, r))
		fail("set up %s: %m", mode);
	if (!strcmp(mode, "posix_timers") && posix_timers(&before, r))
		fail("timer_create: %m");
	timer_t keep[3];
	struct itimerspec keep_spec[3];
	memcpy(keep, before.posix, sizeof(keep));
	memcpy(keep_spec, before.posix_spec, sizeof(keep_spec));
	capture(&before, mode);
	memcpy(before.posix, keep, sizeof(keep));
	memcpy(before.posix_spec, keep_spec, sizeof(keep_spec));
	test_ready();
	test_waitsig();
	char why[256];
	capture(&after, mode);
	if (compare(&before, &after, mode, why, sizeof(why)))
		fail("parent: %s", why);
	if (!strcmp(mode, "posix_timers") && check_posix_timers(&before, why, sizeof(why)))
		fail("parent: %s", why);
	if (!strcmp(mode, "cow") && test_check(cow, SHM_BYTES, seed) != -1)
		fail("parent: copy-on-write page has the child's data");
	if (!strcmp(mode, "shm")) {
		if (test_check((const void *)shm, SHM_BYTES, seed) != -1)
			fail("shared mapping content changed");
		uint64_t next = test_rand64();
		test_fill((void *)(shm + 8), SHM_BYTES - 64, next);
		shm[1] = 0;
		shm[0] = next;
	}
	if (reap_ok(kid))
		fail("child failed (see log)");
	if (!strcmp(mode, "shm") && (shm[1] != shm[0] + 1 || test_check((const void *)(shm + 8), SHM_BYTES - 64, shm[1]) != -1))
		fail("shared mapping: the child's write after restore not seen by the parent");
	pass();
}
