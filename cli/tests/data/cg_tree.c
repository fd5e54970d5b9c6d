/* cg_tree: `cg_tree ROOT_PROCS... -- SUB_PROCS...`: joins the cgroups whose cgroup.procs
 * files come before `--`, unshares a pid and a cgroup namespace (rooted there) and forks
 * their init; the init starts a session and a child that moves itself into the cgroups
 * after `--` (below the init's), then both sleep in pause(). The launcher writes the
 * init's host pid on fd 3, closes it and exits. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void join(const char *procs)
{
	int fd = open(procs, O_WRONLY);
	if (fd < 0 || dprintf(fd, "%d\n", getpid()) < 0) {
		fprintf(stderr, "join %s: %s\n", procs, strerror(errno));
		exit(1);
	}
	close(fd);
}

int main(int argc, char **argv)
{
	int split = 1;
	while (split < argc && strcmp(argv[split], "--") != 0)
		join(argv[split++]);
	if (unshare(CLONE_NEWPID | CLONE_NEWCGROUP) != 0) {
		perror("unshare");
		return 1;
	}
	pid_t init = fork();
	if (init < 0)
		return 1;
	if (init > 0) {
		dprintf(3, "%d\n", init);
		return 0;
	}
	close(3);
	setsid();
	pid_t child = fork();
	if (child == 0) {
		for (int i = split + 1; i < argc; i++)
			join(argv[i]);
		for (;;)
			pause();
	}
	for (;;) {
		if (waitpid(-1, NULL, 0) < 0 && errno == ECHILD)
			pause();
	}
}
