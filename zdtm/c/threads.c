/* threads: `threads MODE [N]`, one multi-threaded state each; all threads are created
 * before the dump and checked after it, each by itself (its own verdict slot):
 *   spin     N threads spinning with integer and floating-point register invariants (running at dump)
 *   tls      __thread values and the fs base (thread pointer) of every thread
 *   sigmask  a random blocked mask per thread
 *   pending  per-thread pending signals (tgkill and rt_tgsigqueueinfo with values to
 *            threads that block them) and the shared queue (sigqueue to the process)
 *   altstack a sigaltstack per thread, used by a handler after the restore
 *   rseq     glibc's rseq registration per thread: cpu_id valid, sched_getcpu works
 *   robust   the robust futex list per thread; a robust mutex held by a thread that
 *            exits after the restore is handed over with EOWNERDEAD
 *   join     clear_child_tid: pthread_join of threads that exit after the restore
 *   names    a random comm per thread
 *   leader   the main thread has exited (pthread_exit); the others carry on
 *   children N processes with N threads each */
#include "tree_util.h"
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <linux/futex.h>
#ifdef __x86_64__
#include <asm/prctl.h>
#endif
#include <sys/mman.h>

#define MAX_THREADS 128

struct slot {
	pthread_t thread;
	int index;
	pid_t tid;
	uint64_t seed;
	volatile int started;
	char error[256];
	volatile int done;
	int robust_done;
};

static struct slot slots[MAX_THREADS];
static int nthreads = 8;
static const char *mode;
static pthread_barrier_t barrier;
static pthread_mutex_t robust_mutex;

#define TFAIL(slot, ...) (snprintf((slot)->error, sizeof((slot)->error), __VA_ARGS__), (void *)1)

static volatile int received_tid[65];
static volatile long received_value[65];
static volatile uintptr_t handler_stack[65];

static void record_handler(int sig, siginfo_t *info, void *ctx)
{
	int local;
	received_tid[sig] = raw_gettid();
	received_value[sig] = info->si_value.sival_int;
	handler_stack[sig] = (uintptr_t)&local;
}

static void wait_term_thread(void)
{
	/* Threads other than the main one wait on the same flag the handler sets. */
	while (!test_sig_received())
		syscall(SYS_futex, test_sig_flag(), FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
	/* The handler only sets the flag: wake the threads still asleep on it. */
	syscall(SYS_futex, test_sig_flag(), FUTEX_WAKE_PRIVATE, 1 << 30, NULL, NULL, 0);
}

/* The thread pointer register (GCC has no __builtin_thread_pointer on powerpc64). */
static void *thread_pointer(void)
{
#ifdef __powerpc64__
	void *tp;
	__asm__("mr %0, 13" : "=r"(tp));
	return tp;
#else
	return __builtin_thread_pointer();
#endif
}

/* The thread pointer: the fs base as the kernel holds it on x86_64 (arch_prctl), the
 * register itself elsewhere (tpidr_el0, r13, a0:a1). */
static uint64_t get_fs(void)
{
#ifdef __x86_64__
	unsigned long fs = 0;
	syscall(SYS_arch_prctl, ARCH_GET_FS, &fs);
	return fs;
#else
	return (uint64_t)(uintptr_t)thread_pointer();
#endif
}

/* Where glibc puts the thread pointer relative to pthread_self(): at the TCB on x86_64;
 * elsewhere the TCB sits at a fixed offset from it, so only "unchanged" is checked. */
#ifdef __x86_64__
#define TP_IS_PTHREAD_SELF 1
#else
#define TP_IS_PTHREAD_SELF 0
#endif

static __thread uint64_t tls_value;
static __thread char tls_array[64];

struct rseq_area {
	uint32_t cpu_id_start, cpu_id;
};
extern const ptrdiff_t __rseq_offset;
extern const unsigned int __rseq_size;

static void *body(void *arg)
{
	struct slot *s = arg;
	s->tid = raw_gettid();
	s->seed = test_rand64();
	pid_t tid = s->tid;
	if (!strcmp(mode, "spin")) {
		/* x and y = x * k kept in step; d = n * step exact in a double (SSE). */
		uint64_t k = s->seed | 1, x = s->seed >> 3, y = x * k, n = 0;
		double step = (double)(1 + s->seed % 1000), d = 0;
		s->started = 1;
		pthread_barrier_wait(&barrier);
		while (!test_sig_received()) {
			x += 7;
			y += 7 * k;
			d += step;
			n++;
			if (n > (1ULL << 50))
				break;
		}
		if (y != x * k)
			return TFAIL(s, "tid %d: integer invariant broken after %lu rounds", tid, (unsigned long)n);
		if (d != (double)n * step)
			return TFAIL(s, "tid %d: SSE sum %.1f, expected %.1f", tid, d, (double)n * step);
		if (raw_gettid() != tid)
			return TFAIL(s, "tid %d became %d", tid, raw_gettid());
		return NULL;
	}
	if (!strcmp(mode, "tls")) {
		tls_value = s->seed;
		test_fill(tls_array, sizeof(tls_array), s->seed);
		uint64_t fs = get_fs();
		if (TP_IS_PTHREAD_SELF && fs != (uint64_t)pthread_self())
			return TFAIL(s, "fs base %#lx is not pthread_self before the dump", (unsigned long)fs);
		pthread_barrier_wait(&barrier);
		wait_term_thread();
		if (get_fs() != fs)
			return TFAIL(s, "tid %d: fs base %#lx, was %#lx", tid, (unsigned long)get_fs(), (unsigned long)fs);
		if (tls_value != s->seed || test_check(tls_array, sizeof(tls_array), s->seed) != -1)
			return TFAIL(s, "tid %d: __thread values changed", tid);
		return NULL;
	}
	if (!strcmp(mode, "sigmask")) {
		sigset_t mask, now;
		sigemptyset(&mask);
		for (int sig = 1; sig < 64; sig++)
			if (sig != SIGKILL && sig != SIGSTOP && sig != SIGTERM && sig != 32 && sig != 33 &&
			    (s->seed >> sig) & 1)
				sigaddset(&mask, sig);
		pthread_sigmask(SIG_SETMASK, &mask, NULL);
		pthread_barrier_wait(&barrier);
		wait_term_thread();
		pthread_sigmask(SIG_SETMASK, NULL, &now);
		for (int sig = 1; sig < 64; sig++)
			if (sigismember(&mask, sig) != sigismember(&now, sig))
				return TFAIL(s, "tid %d: signal %d blocked %d, was %d", tid, sig, sigismember(&now, sig), sigismember(&mask, sig));
		return NULL;
	}
	if (!strcmp(mode, "pending")) {
		/* Thread i blocks SIGRTMIN+i and SIGUSR1 (the process-wide one). */
		int mine = SIGRTMIN + 1 + s->index;
		sigset_t mask;
		sigemptyset(&mask);
		sigaddset(&mask, mine);
		sigaddset(&mask, SIGUSR1);
		sigaddset(&mask, SIGUSR2);
		pthread_sigmask(SIG_BLOCK, &mask, NULL);
		pthread_barrier_wait(&barrier);
		pthread_barrier_wait(&barrier); /* main has queued everything */
		wait_term_thread();
		sigset_t pending;
		sigpending(&pending);
		if (!sigismember(&pending, mine))
			return TFAIL(s, "tid %d: its signal %d no longer pending", tid, mine);
		sigemptyset(&mask);
		sigaddset(&mask, mine);
		pthread_sigmask(SIG_UNBLOCK, &mask, NULL);
		if (received_tid[mine] != tid)
			return TFAIL(s, "signal %d went to tid %d, not %d", mine, received_tid[mine], tid);
		if (received_value[mine] != (long)(s->seed & 0x7fffffff))
			return TFAIL(s, "signal %d value %ld, expected %ld", mine, received_value[mine], (long)(s->seed & 0x7fffffff));
		return NULL;
	}
	if (!strcmp(mode, "altstack")) {
		size_t size = 64 * 1024 + (s->seed % 16) * 4096;
		void *stack = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		stack_t ss = { .ss_sp = stack, .ss_size = size, .ss_flags = 0 }, now;
		if (sigaltstack(&ss, NULL))
			return TFAIL(s, "sigaltstack: %m");
		pthread_barrier_wait(&barrier);
		wait_term_thread();
		sigaltstack(NULL, &now);
		if (now.ss_sp != stack || now.ss_size != size || now.ss_flags != 0)
			return TFAIL(s, "tid %d: altstack %p+%zu flags %d, was %p+%zu", tid, now.ss_sp, now.ss_size, now.ss_flags, stack, size);
		/* One at a time: a handler on the altstack records where it ran. */
		int sig = SIGRTMIN + 1 + s->index;
		syscall(SYS_tgkill, getpid(), tid, sig);
		if (handler_stack[sig] < (uintptr_t)stack || handler_stack[sig] >= (uintptr_t)stack + size)
			return TFAIL(s, "tid %d: handler ran at %#lx, not on the altstack", tid, (unsigned long)handler_stack[sig]);
		return NULL;
	}
	if (!strcmp(mode, "rseq")) {
		if (__rseq_size == 0)
			return TFAIL(s, "glibc did not register rseq");
		pthread_barrier_wait(&barrier);
		wait_term_thread();
		volatile struct rseq_area *area = (void *)((char *)thread_pointer() + __rseq_offset);
		for (int round = 0; round < 100; round++) {
			int cpu = sched_getcpu();
			if (cpu < 0)
				return TFAIL(s, "tid %d: sched_getcpu: %m", tid);
			if ((int32_t)area->cpu_id < 0)
				return TFAIL(s, "tid %d: rseq cpu_id %d: not registered after restore", tid, (int32_t)area->cpu_id);
			sched_yield();
		}
		return NULL;
	}
	if (!strcmp(mode, "robust")) {
		struct robust_list_head *head;
		size_t len;
		syscall(SYS_get_robust_list, 0, &head, &len);
		if (s->index == 0)
			pthread_mutex_lock(&robust_mutex);
		pthread_barrier_wait(&barrier);
		wait_term_thread();
		struct robust_list_head *head_after;
		size_t len_after;
		syscall(SYS_get_robust_list, 0, &head_after, &len_after);
		if (head_after != head || len_after != len)
			return TFAIL(s, "tid %d: robust list %p/%zu, was %p/%zu", tid, head_after, len_after, head, len);
		/* Thread 0 exits holding the mutex: the kernel walks its list. */
		return NULL;
	}
	if (!strcmp(mode, "join") || !strcmp(mode, "children")) {
		pthread_barrier_wait(&barrier);
		wait_term_thread();
		if (raw_gettid() != tid)
			return TFAIL(s, "tid %d became %d", tid, raw_gettid());
		usleep(1000 * (s->seed % 20));
		return (void *)(uintptr_t)0;
	}
	if (!strcmp(mode, "names")) {
		char name[16], now[16];
		snprintf(name, sizeof(name), "t%d-%08x", s->index, (unsigned)s->seed);
		prctl(PR_SET_NAME, name);
		pthread_barrier_wait(&barrier);
		wait_term_thread();
		prctl(PR_GET_NAME, now);
		if (strcmp(name, now))
			return TFAIL(s, "tid %d: name %s, was %s", tid, now, name);
		return NULL;
	}
	if (!strcmp(mode, "leader")) {
		volatile uint64_t value = s->seed;
		pthread_barrier_wait(&barrier);
		if (s->index == 0) {
			/* Ready only once the leader is a zombie: the dump must see it gone. */
			/* /proc/self is the thread group: its stat is the leader's (and names the
			 * right process in a pid namespace without its own /proc). */
			char stat[512];
			for (long spins = 0;; spins++) {
				FILE *f = fopen("/proc/self/stat", "r");
				size_t n = f ? fread(stat, 1, sizeof(stat) - 1, f) : 0;
				if (f)
					fclose(f);
				stat[n] = 0;
				char *end = strrchr(stat, ')');
				if (end && end[1] == ' ' && end[2] == 'Z')
					break;
				if (spins > 10000000)
					fail("the leader thread did not exit");
				sched_yield();
			}
			test_ready();
		}
		wait_term_thread();
		if (value != s->seed)
			return TFAIL(s, "tid %d: value changed", tid);
		if (s->index != 0)
			return NULL;
		/* Thread 0 gives the verdict for the process whose leader is gone. */
		for (int i = 1; i < nthreads; i++) {
			void *result;
			pthread_join(slots[i].thread, &result);
			if (result)
				fail("%s", slots[i].error);
		}
		pass();
	}
	return TFAIL(s, "unknown mode %s", mode);
}

static void start_threads(void)
{
	pthread_barrier_init(&barrier, NULL, nthreads + 1);
	for (int i = 0; i < nthreads; i++) {
		slots[i].index = i;
		if (pthread_create(&slots[i].thread, NULL, body, &slots[i]))
			fail("pthread_create %d: %m", i);
	}
	pthread_barrier_wait(&barrier);
}

/* Joins every thread (clear_child_tid wakes pthread_join) and collects errors. */
static int join_all(char *why, size_t size)
{
	for (int i = 0; i < nthreads; i++) {
		void *result;
		int rc = pthread_join(slots[i].thread, &result);
		if (rc) {
			snprintf(why, size, "pthread_join %d: %s", i, strerror(rc));
			return -1;
		}
		if (result) {
			snprintf(why, size, "%s", slots[i].error);
			return -1;
		}
	}
	return 0;
}

static void install_handlers(int onstack)
{
	struct sigaction action;
	memset(&action, 0, sizeof(action));
	action.sa_sigaction = record_handler;
	action.sa_flags = SA_SIGINFO | (onstack ? SA_ONSTACK : 0);
	for (int sig = SIGRTMIN + 1; sig <= SIGRTMAX; sig++)
		sigaction(sig, &action, NULL);
	sigaction(SIGUSR1, &action, NULL);
	sigaction(SIGUSR2, &action, NULL);
}

static int process_with_threads(void *arg)
{
	start_threads();
	child_ready();
	wait_term_thread();
	char why[300];
	if (join_all(why, sizeof(why)))
		CHILD_FAIL("%s", why);
	return 0;
}

int main(int argc, char **argv)
{
	test_init("threads", argc, argv);
	mode = argc > 1 ? argv[1] : "spin";
	if (argc > 2)
		nthreads = atoi(argv[2]);
	if (nthreads > MAX_THREADS)
		nthreads = MAX_THREADS;
	char why[300];
	if (!strcmp(mode, "children")) {
		pid_t kids[16];
		int n = nthreads;
		for (int i = 0; i < n; i++)
			kids[i] = fork_child(process_with_threads, NULL);
		start_threads();
		test_ready();
		wait_term_thread();
		if (join_all(why, sizeof(why)))
			fail("%s", why);
		for (int i = 0; i < n; i++)
			if (reap_ok(kids[i]))
				fail("child %d failed (see log)", kids[i]);
		pass();
	}
	install_handlers(!strcmp(mode, "altstack"));
	if (!strcmp(mode, "robust")) {
		pthread_mutexattr_t attr;
		pthread_mutexattr_init(&attr);
		pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
		pthread_mutex_init(&robust_mutex, &attr);
	}
	if (!strcmp(mode, "pending")) {
		sigset_t mask;
		sigemptyset(&mask);
		sigaddset(&mask, SIGUSR1);
		sigaddset(&mask, SIGUSR2);
		for (int i = 0; i < nthreads; i++)
			sigaddset(&mask, SIGRTMIN + 1 + i);
		pthread_sigmask(SIG_BLOCK, &mask, NULL);
	}
	start_threads();
	int shared_value = (int)(test_rand64() & 0x7fffffff);
	if (!strcmp(mode, "pending")) {
		for (int i = 0; i < nthreads; i++) {
			siginfo_t info;
			memset(&info, 0, sizeof(info));
			info.si_signo = SIGRTMIN + 1 + i;
			info.si_code = SI_QUEUE;
			info.si_pid = getpid();
			info.si_uid = getuid();
			info.si_value.sival_int = (int)(slots[i].seed & 0x7fffffff);
			if (syscall(SYS_rt_tgsigqueueinfo, getpid(), slots[i].tid, info.si_signo, &info))
				fail("rt_tgsigqueueinfo: %m");
		}
		union sigval value = { .sival_int = shared_value };
		sigqueue(getpid(), SIGUSR1, value);
		syscall(SYS_tgkill, getpid(), slots[0].tid, SIGUSR2);
		pthread_barrier_wait(&barrier);
	}
	if (!strcmp(mode, "leader")) {
		/* Thread 0 tells the harness once this thread is gone, and gives the verdict. */
		pthread_exit(NULL);
	}
	test_ready();
	wait_term_thread();
	if (!strcmp(mode, "pending")) {
		sigset_t pending;
		sigpending(&pending);
		if (!sigismember(&pending, SIGUSR1))
			fail("shared SIGUSR1 no longer pending");
	}
	if (join_all(why, sizeof(why)))
		fail("%s", why);
	if (!strcmp(mode, "pending")) {
		sigset_t mask;
		sigemptyset(&mask);
		sigaddset(&mask, SIGUSR1);
		pthread_sigmask(SIG_UNBLOCK, &mask, NULL);
		if (received_value[SIGUSR1] != shared_value)
			fail("shared SIGUSR1 value %ld, expected %d", received_value[SIGUSR1], shared_value);
	}
	if (!strcmp(mode, "robust")) {
		int rc = pthread_mutex_lock(&robust_mutex);
		if (rc != EOWNERDEAD)
			fail("robust mutex of the exited owner: %s, expected EOWNERDEAD", strerror(rc));
	}
	pass();
}
