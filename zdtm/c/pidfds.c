/* pidfds: the test holds a pidfd of its child (PIDFD_NONBLOCK), a pidfd of a child that
 * exited and was reaped, and the child holds a pidfd of the test. After restore: the
 * child's pidfd still names the child (waitid(P_PIDFD) gets the exit code it chooses
 * after restore, pidfd_send_signal reaches it), the dead one reports an exited process,
 * the child's pidfd names its parent, flags are kept. A second pidfd of the exited child
 * (PIDFD_NONBLOCK) still shares the first one's inode, as two pidfds of one pid do. */
#define _GNU_SOURCE
#include "tree_util.h"
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>

#ifndef PIDFD_NONBLOCK
#define PIDFD_NONBLOCK O_NONBLOCK
#endif

static int pidfd_open(pid_t pid, unsigned int flags)
{
	return (int)syscall(SYS_pidfd_open, pid, flags);
}

static pid_t fdinfo_pid(int fd)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	FILE *f = fopen(path, "r");
	size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
	if (f)
		fclose(f);
	buf[n] = 0;
	/* NSpid's last number is the pid in the reader's own namespace (Pid: is in /proc's). */
	char *at = strstr(buf, "\nNSpid:");
	if (!at)
		return -2;
	at += 7;
	char *end = strchr(at, '\n');
	if (end)
		*end = 0;
	char *last = strrchr(at, '\t');
	return (pid_t)atoi(last ? last + 1 : at);
}

static int go[2];

static int child(void *arg)
{
	int parent = pidfd_open(getppid(), 0);
	if (parent < 0)
		CHILD_FAIL("pidfd_open parent: %m");
	child_ready();
	uint8_t code;
	if (read(go[0], &code, 1) != 1)
		CHILD_FAIL("read exit code: %m");
	if (fdinfo_pid(parent) != getppid())
		CHILD_FAIL("pidfd of the parent names pid %d, parent is %d", fdinfo_pid(parent), getppid());
	return code;
}

int main(int argc, char **argv)
{
	test_init("pidfds", argc, argv);
	if (pipe(go))
		fail("pipe: %m");
	pid_t gone = fork();
	if (gone == 0)
		_exit(0);
	int dead = pidfd_open(gone, 0);
	int dead_too = pidfd_open(gone, PIDFD_NONBLOCK);
	if (dead < 0 || dead_too < 0 || waitpid(gone, NULL, 0) != gone)
		fail("pidfd of a child that exits: %m");
	struct stat one, two;
	if (fstat(dead, &one) || fstat(dead_too, &two) || one.st_ino != two.st_ino)
		fail("two pidfds of one pid have different inodes before the dump");
	pid_t kid = fork_child(child, NULL);
	int live = pidfd_open(kid, PIDFD_NONBLOCK);
	if (live < 0)
		fail("pidfd_open child: %m");
	test_ready();
	test_waitsig();

	if (fdinfo_pid(live) != kid)
		fail("child's pidfd names pid %d, not %d", fdinfo_pid(live), kid);
	if (!(fcntl(live, F_GETFL) & O_NONBLOCK))
		fail("child's pidfd lost PIDFD_NONBLOCK");
	if (fdinfo_pid(dead) != -1)
		fail("pidfd of the exited child names pid %d, not -1", fdinfo_pid(dead));
	if (fstat(dead, &one) || fstat(dead_too, &two) || one.st_ino != two.st_ino)
		fail("the two pidfds of the exited child have inodes %lu and %lu", (unsigned long)one.st_ino, (unsigned long)two.st_ino);
	if (!(fcntl(dead_too, F_GETFL) & O_NONBLOCK) || (fcntl(dead, F_GETFL) & O_NONBLOCK))
		fail("the exited child's pidfds lost their flags");
	struct pollfd p = { .fd = dead, .events = POLLIN };
	if (poll(&p, 1, 0) != 1 || !(p.revents & POLLIN))
		fail("pidfd of the exited child does not poll readable");
	if (syscall(SYS_pidfd_send_signal, dead, 0, NULL, 0) != -1 || errno != ESRCH)
		fail("pidfd_send_signal to the exited child: not ESRCH (%m)");
	if (syscall(SYS_pidfd_send_signal, live, 0, NULL, 0))
		fail("pidfd_send_signal to the child: %m");
	uint8_t code = (uint8_t)(test_rand64() % 200 + 20);
	if (write(go[1], &code, 1) != 1)
		fail("release child: %m");
	/* The pidfd is non-blocking: poll for the exit, then collect it through the pidfd. */
	struct pollfd exit_poll = { .fd = live, .events = POLLIN };
	if (poll(&exit_poll, 1, 30000) != 1)
		fail("the child's pidfd never reported its exit");
	siginfo_t info;
	memset(&info, 0, sizeof(info));
	if (waitid(P_PIDFD, live, &info, WEXITED))
		fail("waitid(P_PIDFD): %m");
	if (info.si_pid != kid || info.si_code != CLD_EXITED || info.si_status != code)
		fail("waitid(P_PIDFD) got pid %d code %d status %d, expected %d exiting %d", info.si_pid, info.si_code, info.si_status, kid, code);
	pass();
}
