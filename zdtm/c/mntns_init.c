/* mntns_init.c: not a test. The `mntns` flavor's init, so far with the namespaces of
 * issue 15's M1: `mntns_init ROOTFS OUTDIR HOSTNAME PROGRAM ARGS...` unshares new pid, IPC,
 * mount and UTS namespaces and forks their pid 1, writes "nsinit <host pid of it>" into
 * the ready pipe and exits. The init makes every mount private, binds ROOTFS onto itself
 * read-only (the test's root), binds OUTDIR at ROOTFS/zdtm, pivots into ROOTFS and
 * drops the old root, sets the host name and re-executes itself from the rootfs
 * (`/c-tests/mntns_init --reap PROGRAM ARGS...`: nothing of the init may come from outside
 * the new root). Then, like ns_init, it starts PROGRAM (a path inside ROOTFS; the test
 * daemonizes under it as usual, with ZDTM_OUTDIR=/zdtm) and reaps whatever ends up as
 * its child, forever. Its stdio is /zdtm/mntns_init.log. Errors before the test runs are
 * reported on the ready pipe as text the harness shows as a failed launch. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int ready_fd = -1;

static void die(const char *what, const char *path)
{
	dprintf(ready_fd, "mntns_init: %s %s: %s\n", what, path, strerror(errno));
	_exit(2);
}

/* inside the namespaces: start the test, then reap forever. */
static int reap(char **argv)
{
	pid_t test = fork();
	if (test == 0) {
		execv(argv[0], argv);
		dprintf(ready_fd, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	/* Only the test reports on the ready pipe. */
	syscall(SYS_close_range, 3, ~0U, 0);
	for (;;) {
		if (waitpid(-1, NULL, __WALL) < 0 && errno == ECHILD)
			pause();
	}
}

int main(int argc, char **argv)
{
	const char *fd_text = getenv("ZDTM_READY_FD");
	ready_fd = fd_text ? atoi(fd_text) : -1;
	if (argc >= 3 && ready_fd >= 0 && !strcmp(argv[1], "--reap"))
		return reap(argv + 2);
	if (argc < 5 || ready_fd < 0) {
		fprintf(stderr, "usage: ZDTM_READY_FD=N mntns_init ROOTFS OUTDIR HOSTNAME PROGRAM ARGS...\n");
		return 2;
	}
	const char *rootfs = argv[1], *outdir = argv[2], *hostname = argv[3];
	if (unshare(CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWNS | CLONE_NEWUTS) != 0) {
		dprintf(ready_fd, "skip unshare(CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWNS | CLONE_NEWUTS): %s\n", strerror(errno));
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
	char path[4096];
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
		die("make private", "/");
	if (mount(rootfs, rootfs, NULL, MS_BIND, NULL))
		die("bind", rootfs);
	if (mount(NULL, rootfs, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL))
		die("remount read-only", rootfs);
	snprintf(path, sizeof path, "%s/zdtm", rootfs);
	if (mount(outdir, path, NULL, MS_BIND, NULL))
		die("bind", outdir);
	if (chdir(rootfs))
		die("chdir", rootfs);
	if (syscall(SYS_pivot_root, ".", "."))
		die("pivot_root into", rootfs);
	if (umount2(".", MNT_DETACH))
		die("detach the old root under", rootfs);
	if (chdir("/zdtm"))
		die("chdir", "/zdtm");
	if (sethostname(hostname, strlen(hostname)))
		die("sethostname", hostname);
	int log = open("/zdtm/mntns_init.log", O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (log < 0)
		die("open", "/zdtm/mntns_init.log");
	dup2(log, 0);
	dup2(log, 1);
	dup2(log, 2);
	if (log > 2)
		close(log);
	if (setenv("ZDTM_OUTDIR", "/zdtm", 1))
		die("setenv", "ZDTM_OUTDIR");
	/* argv[3] (the host name, used) becomes "--reap" before PROGRAM. */
	argv[2] = "/c-tests/mntns_init";
	argv[3] = "--reap";
	execv(argv[2], argv + 2);
	die("exec", argv[2]);
	return 2;
}
