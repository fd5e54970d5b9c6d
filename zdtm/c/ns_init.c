/* ns_init.c: not a test. The `ns` flavor's init: `ns_init PROGRAM ARGS...` unshares a
 * new pid and IPC namespace and forks its pid 1, writes "nsinit <host pid of it>" into the ready
 * pipe and exits. The init starts PROGRAM (the test, which daemonizes under it as usual)
 * and reaps whatever ends up as its child, forever.
 * With ZDTM_CGROUPS (the `cgroup.procs` files of the test's cgroups, one a line) it first
 * joins them and unshares a cgroup namespace too, rooted there. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Writes our pid into every cgroup.procs file listed in `list` (one a line); false with
 * errno set when one fails. */
static int join_cgroups(const char *list, int ready_fd)
{
	char path[4096];
	const char *line = list;

	while (*line) {
		size_t len = strcspn(line, "\n");

		if (len > 0 && len < sizeof(path)) {
			memcpy(path, line, len);
			path[len] = 0;
			int fd = open(path, O_WRONLY);
			if (fd < 0 || dprintf(fd, "%d\n", getpid()) < 0) {
				dprintf(ready_fd, "error join cgroup %s: %s\n", path, strerror(errno));
				return 0;
			}
			close(fd);
		}
		line += len;
		if (*line == '\n')
			line++;
	}
	return 1;
}

int main(int argc, char **argv)
{
	const char *fd_text = getenv("ZDTM_READY_FD");
	int ready_fd = fd_text ? atoi(fd_text) : -1;
	if (argc < 2 || ready_fd < 0) {
		fprintf(stderr, "usage: ZDTM_READY_FD=N ns_init PROGRAM ARGS...\n");
		return 2;
	}
	const char *cgroups = getenv("ZDTM_CGROUPS");
	int flags = CLONE_NEWPID | CLONE_NEWIPC;
	if (cgroups) {
		if (!join_cgroups(cgroups, ready_fd))
			return 1;
		flags |= CLONE_NEWCGROUP;
		unsetenv("ZDTM_CGROUPS");
	}
	if (unshare(flags) != 0) {
		dprintf(ready_fd, "skip unshare(CLONE_NEWPID | CLONE_NEWIPC%s): %s\n", cgroups ? " | CLONE_NEWCGROUP" : "", strerror(errno));
		return 0;
	}
	pid_t init = fork();
	if (init < 0) {
		perror("fork");
		return 2;
	}
	if (init > 0) {
		dprintf(ready_fd, "nsinit %d\n", init);
		return 0;
	}
	setsid();
	int null_fd = open("/dev/null", O_RDWR);
	dup2(null_fd, 0);
	dup2(null_fd, 1);
	dup2(null_fd, 2);
	pid_t test = fork();
	if (test == 0) {
		execv(argv[1], argv + 1);
		dprintf(ready_fd, "exec %s: %s\n", argv[1], strerror(errno));
		_exit(127);
	}
	/* Only the test reports on the ready pipe. */
	syscall(SYS_close_range, 3, ~0U, 0);
	for (;;) {
		if (waitpid(-1, NULL, __WALL) < 0 && errno == ECHILD)
			pause();
	}
}
