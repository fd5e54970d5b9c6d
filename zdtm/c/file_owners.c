/* file_owners: F_SETOWN, F_SETOWN_EX and F_SETSIG survive, and SIGIO comes after restore.
 * A pipe's read end (O_ASYNC) is owned by the test with F_SETSIG SIGRTMIN+2; a second
 * pipe's read end is owned by the test's thread (F_OWNER_TID) with the default SIGIO; a
 * socket's end is owned by the test's child with F_SETSIG SIGUSR2. After restore the
 * owners, signals and O_ASYNC read back as before, and writing into each delivers the
 * signal to its owner (sigtimedwait), with si_fd naming the fd for the test's own. */
#define _GNU_SOURCE
#include "tree_util.h"
#include <fcntl.h>
#include <sys/socket.h>
#include <time.h>

static int sock[2];

static int wait_signal(int signo, siginfo_t *info)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, signo);
	struct timespec timeout = { .tv_sec = 10 };
	return sigtimedwait(&set, info, &timeout) == signo ? 0 : -1;
}

static int child(void *arg)
{
	(void)arg;
	child_ready();
	test_waitsig();
	siginfo_t info;
	if (wait_signal(SIGUSR2, &info))
		CHILD_FAIL("no SIGUSR2 for the socket it owns: %m");
	if (info.si_code != POLL_IN)
		CHILD_FAIL("SIGUSR2 with si_code %d, not POLL_IN", info.si_code);
	return 0;
}

static void own(int fd, int type, pid_t pid, int signo)
{
	struct f_owner_ex owner = { .type = type, .pid = pid };
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_ASYNC | O_NONBLOCK) || fcntl(fd, F_SETOWN_EX, &owner) || fcntl(fd, F_SETSIG, signo))
		fail("own fd %d: %m", fd);
}

static void check_owner(int fd, int type, pid_t pid, int signo)
{
	struct f_owner_ex owner;
	if (fcntl(fd, F_GETOWN_EX, &owner))
		fail("F_GETOWN_EX fd %d: %m", fd);
	if (owner.type != type || owner.pid != pid)
		fail("fd %d: owner type %d pid %d, was type %d pid %d", fd, owner.type, owner.pid, type, pid);
	if (fcntl(fd, F_GETSIG) != signo)
		fail("fd %d: F_GETSIG %d, was %d", fd, fcntl(fd, F_GETSIG), signo);
	if (!(fcntl(fd, F_GETFL) & O_ASYNC))
		fail("fd %d: O_ASYNC lost", fd);
}

int main(int argc, char **argv)
{
	test_init("file_owners", argc, argv);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGRTMIN + 2);
	sigaddset(&set, SIGIO);
	sigaddset(&set, SIGUSR2);
	if (sigprocmask(SIG_BLOCK, &set, NULL))
		fail("sigprocmask: %m");
	int a[2], b[2];
	if (pipe(a) || pipe(b) || socketpair(AF_UNIX, SOCK_STREAM, 0, sock))
		fail("pipe or socketpair: %m");
	pid_t kid = fork_child(child, NULL);
	pid_t me = getpid(), tid = (pid_t)syscall(SYS_gettid);
	own(a[0], F_OWNER_PID, me, SIGRTMIN + 2);
	own(b[0], F_OWNER_TID, tid, 0);
	own(sock[0], F_OWNER_PID, kid, SIGUSR2);
	test_ready();
	test_waitsig();

	check_owner(a[0], F_OWNER_PID, me, SIGRTMIN + 2);
	check_owner(b[0], F_OWNER_TID, tid, 0);
	check_owner(sock[0], F_OWNER_PID, kid, SIGUSR2);
	siginfo_t info;
	if (write(a[1], "a", 1) != 1 || wait_signal(SIGRTMIN + 2, &info))
		fail("no SIGRTMIN+2 after a write into the first pipe");
	if (info.si_fd != a[0] || info.si_code != POLL_IN)
		fail("SIGRTMIN+2 with si_fd %d si_code %d, not fd %d POLL_IN", info.si_fd, info.si_code, a[0]);
	if (write(b[1], "b", 1) != 1 || wait_signal(SIGIO, &info))
		fail("no SIGIO after a write into the second pipe");
	if (write(sock[1], "c", 1) != 1)
		fail("write into the socket: %m");
	if (reap_ok(kid))
		fail("child failed");
	pass();
}
