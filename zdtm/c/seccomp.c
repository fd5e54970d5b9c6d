/* seccomp: `seccomp filter`: three threads share a filter installed with TSYNC that makes
 * getppid() fail with errno 42; one of them adds a filter of its own that makes
 * getpgid() fail with errno 43. After restore each thread must still see exactly its
 * filters (a fresh process has none). `seccomp strict`: a child in strict mode blocks in
 * read(); after restore it is released through a pipe, answers through another, then
 * calls getpid() and must be killed by SIGKILL, as strict mode does. */
#define _GNU_SOURCE
#include "tree_util.h"
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/prctl.h>

enum { THREADS = 3, OWN_FILTER_THREAD = 1 };

static int install(int nr, int error, unsigned int flags)
{
	struct sock_filter code[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | error),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { sizeof(code) / sizeof(code[0]), code };
	return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
}

static int status_field(const char *key)
{
	char buf[4096], *at;
	FILE *f = fopen("/proc/thread-self/status", "r");
	size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
	if (f)
		fclose(f);
	buf[n] = 0;
	at = strstr(buf, key);
	return at ? atoi(at + strlen(key)) : -1;
}

static pthread_barrier_t filters_in, term_seen;
static char verdicts[THREADS][160];

/* What this thread sees of its filters; "" when all is as installed. */
static void check(int index, char *why, size_t size)
{
	int own = index == OWN_FILTER_THREAD;
	errno = 0;
	long ppid = syscall(SYS_getppid);
	int ppid_errno = errno;
	errno = 0;
	long pgid = syscall(SYS_getpgid, 0);
	int pgid_errno = errno;
	int mode = status_field("Seccomp:\t"), count = status_field("Seccomp_filters:\t");
	why[0] = 0;
	if (ppid != -1 || ppid_errno != 42)
		snprintf(why, size, "thread %d: getppid %ld errno %d, filter wants errno 42", index, ppid, ppid_errno);
	else if (own && (pgid != -1 || pgid_errno != 43))
		snprintf(why, size, "thread %d: getpgid %ld errno %d, own filter wants errno 43", index, pgid, pgid_errno);
	else if (!own && pgid < 0)
		snprintf(why, size, "thread %d: getpgid failed (errno %d) without a filter for it", index, pgid_errno);
	else if (mode != 2 || (count >= 0 && count != 1 + own))
		snprintf(why, size, "thread %d: Seccomp %d with %d filters, expected 2 with %d", index, mode, count, 1 + own);
}

static void *thread_main(void *arg)
{
	int index = (int)(long)arg;
	pthread_barrier_wait(&filters_in);
	if (index == OWN_FILTER_THREAD && install(SYS_getpgid, 43, 0))
		snprintf(verdicts[index], sizeof(verdicts[index]), "thread %d: install own filter: %m", index);
	pthread_barrier_wait(&filters_in);
	pthread_barrier_wait(&term_seen);
	if (!verdicts[index][0])
		check(index, verdicts[index], sizeof(verdicts[index]));
	return NULL;
}

static void filter_mode(void)
{
	pthread_t threads[THREADS];
	pthread_barrier_init(&filters_in, NULL, THREADS);
	pthread_barrier_init(&term_seen, NULL, THREADS);
	for (long i = 1; i < THREADS; i++)
		if (pthread_create(&threads[i], NULL, thread_main, (void *)i))
			fail("pthread_create");
	/* Thread 0 is the main thread: TSYNC puts the filter on every thread. */
	if (install(SYS_getppid, 42, SECCOMP_FILTER_FLAG_TSYNC))
		fail("seccomp TSYNC: %m");
	pthread_barrier_wait(&filters_in);
	pthread_barrier_wait(&filters_in);
	test_ready();
	test_waitsig();
	pthread_barrier_wait(&term_seen);
	check(0, verdicts[0], sizeof(verdicts[0]));
	for (int i = 1; i < THREADS; i++)
		pthread_join(threads[i], NULL);
	for (int i = 0; i < THREADS; i++)
		if (verdicts[i][0])
			fail("%s", verdicts[i]);
	pass();
}

static void strict_mode(void)
{
	int go[2], answer[2];
	if (pipe(go) || pipe(answer))
		fail("pipe: %m");
	pid_t kid = fork();
	if (kid < 0)
		fail("fork: %m");
	if (kid == 0) {
		char byte;
		if (test_ready_fd() >= 0)
			close(test_ready_fd());
		test_ready_sent();
		if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT))
			syscall(SYS_exit, 1);
		/* Only read, write, exit and sigreturn from here on. */
		syscall(SYS_write, answer[1], "s", 1);
		if (syscall(SYS_read, go[0], &byte, 1) != 1)
			syscall(SYS_exit, 2);
		syscall(SYS_write, answer[1], "k", 1);
		syscall(SYS_getpid); /* strict mode: SIGKILL */
		syscall(SYS_exit, 3);
	}
	close(go[0]);
	close(answer[1]);
	char byte = 0;
	if (read(answer[0], &byte, 1) != 1 || byte != 's')
		fail("child did not enter strict mode");
	test_ready();
	test_waitsig();
	if (write(go[1], "g", 1) != 1)
		fail("release the child: %m");
	if (read(answer[0], &byte, 1) != 1 || byte != 'k')
		fail("the strict-mode child did not answer after restore");
	int status;
	if (waitpid(kid, &status, 0) != kid)
		fail("waitpid: %m");
	if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
		fail("strict-mode child ended with status %#x, not SIGKILL for its getpid()", status);
	pass();
}

int main(int argc, char **argv)
{
	test_init("seccomp", argc, argv);
	const char *mode = argc > 1 ? argv[1] : "filter";
	if (!strcmp(mode, "strict"))
		strict_mode();
	filter_mode();
}
