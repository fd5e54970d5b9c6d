/* chroot_sub: a child chrooted into a subdirectory of the test's directory (its cwd the
 * new root's "sub" directory) is restored inside it: after restore it sees the marker
 * file inside its root, not the one beside the subdirectory, its cwd is still /sub, and
 * ".." of its root is its root. It reports to the test, which is not chrooted, through a
 * pipe. */
#define _GNU_SOURCE
#include "tree_util.h"
#include <fcntl.h>
#include <sys/stat.h>

static int report[2];
static char jail[4096];

static int child(void *arg)
{
	(void)arg;
	close(report[0]);
	if (chroot(jail))
		CHILD_FAIL("chroot %s: %m", jail);
	if (chdir("/sub"))
		CHILD_FAIL("chdir /sub: %m");
	child_ready();
	test_waitsig();
	struct stat st;
	const char *verdict = "ok";
	char cwd[256];
	if (stat("/inside", &st))
		verdict = "the marker inside the root is gone: not chrooted there";
	else if (stat("/../outside", &st) == 0 || stat("/outside", &st) == 0)
		verdict = "the marker outside the root is visible";
	else if (!getcwd(cwd, sizeof(cwd)) || strcmp(cwd, "/sub"))
		verdict = "cwd is not /sub";
	if (write(report[1], verdict, strlen(verdict)) < 0)
		return 1;
	return strcmp(verdict, "ok") != 0;
}

int main(int argc, char **argv)
{
	test_init("chroot_sub", argc, argv);
	char path[4096];
	test_path(jail, sizeof(jail), "chroot_sub.root");
	mkdir(jail, 0755);
	snprintf(path, sizeof(path), "%s/sub", jail);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/inside", jail);
	int fd = open(path, O_CREAT | O_WRONLY, 0644);
	test_path(path, sizeof(path), "outside");
	int out = open(path, O_CREAT | O_WRONLY, 0644);
	if (fd < 0 || out < 0)
		fail("create markers: %m");
	close(fd);
	close(out);
	if (pipe(report))
		fail("pipe: %m");
	pid_t kid = fork_child(child, NULL);
	close(report[1]);
	test_ready();
	test_waitsig();
	kill(kid, SIGTERM);
	char verdict[256] = "";
	ssize_t n = read(report[0], verdict, sizeof(verdict) - 1);
	if (n <= 0)
		fail("no report from the chrooted child");
	verdict[n] = 0;
	if (strcmp(verdict, "ok"))
		fail("chrooted child: %s", verdict);
	if (reap_ok(kid))
		fail("child failed");
	pass();
}
