/* rt_daemon.c: not a test. `rt_daemon NAME PROGRAM ARGS...` does for a language runtime
 * what test_init() does for a C test (fork, the parent exits, setsid, stdio to /dev/null
 * and <outdir>/NAME.log, inherited fds closed but the ready pipe), then execs PROGRAM
 * with ZDTM_NAME=NAME. The runtime's script speaks the protocol itself: it writes
 * "<pid> <token>" into $ZDTM_READY_FD, and on SIGTERM writes <outdir>/NAME.out. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	const char *fd_text = getenv("ZDTM_READY_FD");
	const char *outdir = getenv("ZDTM_OUTDIR");
	int ready_fd = fd_text ? atoi(fd_text) : -1;
	if (argc < 3 || !outdir) {
		fprintf(stderr, "usage: ZDTM_OUTDIR=DIR rt_daemon NAME PROGRAM ARGS...\n");
		return 2;
	}
	pid_t launcher = getpid();
	pid_t pid = fork();
	if (pid < 0)
		return 2;
	if (pid > 0)
		_exit(0);
	while (getppid() == launcher)
		sched_yield();
	setsid();
	char log[4096];
	snprintf(log, sizeof(log), "%s/%s.log", outdir, argv[1]);
	int null_fd = open("/dev/null", O_RDONLY);
	int log_fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
	dup2(null_fd, 0);
	dup2(log_fd, 1);
	dup2(log_fd, 2);
	if (ready_fd > 3)
		syscall(SYS_close_range, 3, ready_fd - 1, 0);
	syscall(SYS_close_range, ready_fd >= 3 ? ready_fd + 1 : 3, ~0U, 0);
	setenv("ZDTM_NAME", argv[1], 1);
	execv(argv[2], argv + 2);
	dprintf(ready_fd, "skip exec %s: %s\n", argv[2], strerror(errno));
	return 127;
}
