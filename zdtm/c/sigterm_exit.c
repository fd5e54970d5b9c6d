/* sigterm_exit: a child that leaves SIGTERM at its default action must still die of it
 * after restore. The test's root forks the child, holds a pidfd of it, and after the
 * harness's SIGTERM sends SIGTERM to the child through the pidfd, polls the pidfd for
 * its exit (60 s at most, the harness allows 120) and reads its status with
 * waitid(P_PIDFD): it must be killed by SIGTERM. When it is not, the child's state,
 * wchan, blocked and pending signals and tracer are logged.
 * `seccomp_tsync`: the child has two more threads blocked in read() on a pipe, installs a
 * filter with SECCOMP_FILTER_FLAG_TSYNC (getppid fails with errno 42 in every thread)
 * and waits in pthread_join.
 * `pty`: the child leads a session of its own whose controlling terminal is the slave
 * of a pty pair it holds both ends of, and blocks in read() on the slave. */
#define _GNU_SOURCE
#include "tree_util.h"
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/ioctl.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

static const char *mode;
static int idle_pipe[2];
static pthread_barrier_t threads_started;

static void *blocked_reader(void *arg)
{
	(void)arg;
	/* Past glibc's start-up (signals blocked until the thread runs its own code). */
	pthread_barrier_wait(&threads_started);
	char byte;
	/* Nobody writes: the thread sleeps until the process dies. */
	while (read(idle_pipe[0], &byte, 1) < 0)
		;
	return NULL;
}

static int seccomp_child(void)
{
	pthread_t threads[2];
	if (pipe(idle_pipe) || pthread_barrier_init(&threads_started, NULL, 3))
		CHILD_FAIL("pipe: %m");
	for (int i = 0; i < 2; i++)
		if (pthread_create(&threads[i], NULL, blocked_reader, NULL))
			CHILD_FAIL("pthread_create");
	pthread_barrier_wait(&threads_started);
	struct sock_filter code[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getppid, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | 42),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { sizeof(code) / sizeof(code[0]), code };
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog))
		CHILD_FAIL("seccomp TSYNC: %m");
	errno = 0;
	if (syscall(SYS_getppid) != -1 || errno != 42)
		CHILD_FAIL("the filter is not in force");
	child_ready();
	pthread_join(threads[0], NULL);
	CHILD_FAIL("a reader thread returned");
}

static int pty_child(void)
{
	if (setsid() < 0)
		CHILD_FAIL("setsid: %m");
	int master = posix_openpt(O_RDWR | O_NOCTTY);
	char slave_path[64];
	if (master < 0 || grantpt(master) || unlockpt(master) || ptsname_r(master, slave_path, sizeof(slave_path)))
		CHILD_FAIL("posix_openpt: %m");
	int slave = open(slave_path, O_RDWR);
	if (slave < 0)
		CHILD_FAIL("open %s: %m", slave_path);
	if (ioctl(slave, TIOCSCTTY, 0))
		CHILD_FAIL("TIOCSCTTY: %m");
	child_ready();
	char byte;
	while (read(slave, &byte, 1) <= 0)
		;
	CHILD_FAIL("read a byte nobody wrote");
}

static int child(void *arg)
{
	(void)arg;
	/* Back to the default action: the library installed a handler. */
	signal(SIGTERM, SIG_DFL);
	return !strcmp(mode, "pty") ? pty_child() : seccomp_child();
}

/* What the kernel says of `pid` that explains why it did not die. */
static void log_state(pid_t pid)
{
	char path[64], buf[4096];
	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	while (fgets(buf, sizeof(buf), f))
		if (!strncmp(buf, "State:", 6) || !strncmp(buf, "SigBlk:", 7) || !strncmp(buf, "SigPnd:", 7) ||
		    !strncmp(buf, "ShdPnd:", 7) || !strncmp(buf, "SigIgn:", 7) || !strncmp(buf, "TracerPid:", 10))
			test_log("child %d: %s", pid, strtok(buf, "\n"));
	fclose(f);
	snprintf(path, sizeof(path), "/proc/%d/wchan", pid);
	f = fopen(path, "r");
	if (f && fgets(buf, sizeof(buf), f))
		test_log("child %d: wchan %s", pid, buf);
	if (f)
		fclose(f);
}

int main(int argc, char **argv)
{
	mode = argc > 1 ? argv[1] : "seccomp_tsync";
	test_init("sigterm_exit", argc, argv);
	if (strcmp(mode, "pty") && strcmp(mode, "seccomp_tsync"))
		fail("unknown mode %s", mode);
	pid_t kid = fork_child(child, NULL);
	int pidfd = (int)syscall(SYS_pidfd_open, kid, 0);
	if (pidfd < 0)
		fail("pidfd_open %d: %m", kid);
	test_ready();
	test_waitsig();

	if (syscall(SYS_pidfd_send_signal, pidfd, SIGTERM, NULL, 0))
		fail("pidfd_send_signal SIGTERM to %d: %m", kid);
	struct pollfd exited = { .fd = pidfd, .events = POLLIN };
	int ready;
	while ((ready = poll(&exited, 1, 60 * 1000)) < 0 && errno == EINTR)
		;
	if (ready == 0) {
		log_state(kid);
		kill(kid, SIGKILL);
		waitpid(kid, NULL, 0);
		fail("child %d (%s) still alive 60 s after SIGTERM", kid, mode);
	}
	siginfo_t info = { 0 };
	if (syscall(SYS_waitid, P_PIDFD, pidfd, &info, WEXITED, NULL))
		fail("waitid P_PIDFD: %m");
	if (info.si_pid != kid || info.si_code != CLD_KILLED || info.si_status != SIGTERM)
		fail("child %d (%s) ended with code %d status %d, not killed by SIGTERM", kid, mode, info.si_code, info.si_status);
	pass();
}
