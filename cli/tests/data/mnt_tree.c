/* mnt_tree.c: a process in a mount and UTS namespace of its own (linked -static, so
 * it needs nothing outside its root).
 *
 * `mnt_tree launch ROOT HOSTDIR HOSTFILE RODIR`: unshare(CLONE_NEWNS | CLONE_NEWUTS),
 * make every mount private, bind ROOT onto itself (the root mount), bind HOSTDIR at
 * ROOT/data, HOSTFILE at ROOT/etc/bound (a file), RODIR read-only at ROOT/ro, ROOT/sub
 * at ROOT/inner (a bind of the root's own directory) and ROOT/data/alias-source at
 * ROOT/alias (a file bind of a file of the external /data); pivot_root into ROOT and
 * drop the old root; set the host and domain name; stdio to /log; exec `/mnt_tree run`.
 *
 * `run`: open /data/f read-write (offset 3), /etc/bound and /alias read-only, chdir
 * /data, write its pid on fd 3 and close it (ready), wait for SIGUSR1. Then check that
 * everything is as before (names, files through the old fds and by path, cwd) and that
 * /ro refuses writes with EROFS, and write PASS or FAIL: WHY to /data/result. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static void die(const char *what)
{
	dprintf(2, "mnt_tree: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void bind(const char *from, const char *to, unsigned long more)
{
	if (mount(from, to, NULL, MS_BIND, NULL))
		die(to);
	if (more && mount(NULL, to, NULL, MS_BIND | MS_REMOUNT | more, NULL))
		die("remount");
}

static int launch(char **argv)
{
	char path[4096];
	const char *root = argv[2];
	setsid();
	if (unshare(CLONE_NEWNS | CLONE_NEWUTS))
		die("unshare");
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
		die("make / private");
	bind(root, root, 0);
	snprintf(path, sizeof path, "%s/data", root);
	bind(argv[3], path, 0);
	snprintf(path, sizeof path, "%s/etc/bound", root);
	bind(argv[4], path, 0);
	snprintf(path, sizeof path, "%s/ro", root);
	bind(argv[5], path, MS_RDONLY | MS_NOSUID);
	char sub[4096];
	snprintf(sub, sizeof sub, "%s/sub", root);
	snprintf(path, sizeof path, "%s/inner", root);
	bind(sub, path, 0);
	snprintf(sub, sizeof sub, "%s/data/alias-source", root);
	snprintf(path, sizeof path, "%s/alias", root);
	bind(sub, path, MS_RDONLY);
	if (chdir(root))
		die("chdir root");
	if (syscall(SYS_pivot_root, ".", "."))
		die("pivot_root");
	if (umount2(".", MNT_DETACH))
		die("umount old root");
	if (chdir("/"))
		die("chdir /");
	if (sethostname("crust-mnt", 9) || setdomainname("crust.test", 10))
		die("set names");
	int log = open("/log", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (log < 0 || dup2(log, 1) < 0 || dup2(log, 2) < 0 || dup2(log, 0) < 0)
		die("stdio");
	close(log);
	/* Nothing but stdio and the ready pipe: any other inherited fd is of the old root. */
	syscall(SYS_close_range, 4, ~0U, 0);
	execl("/mnt_tree", "mnt_tree", "run", (char *)NULL);
	die("exec /mnt_tree");
	return 1;
}

static volatile sig_atomic_t go;
static void on_usr1(int sig) { (void)sig; go = 1; }

static char failure[512];
#define CHECK(cond, ...) do { if (!(cond) && !failure[0]) snprintf(failure, sizeof failure, __VA_ARGS__); } while (0)

static void read_file(const char *path, char *out, size_t size)
{
	memset(out, 0, size);
	int fd = open(path, O_RDONLY);
	if (fd >= 0) {
		if (read(fd, out, size - 1) < 0)
			out[0] = 0;
		close(fd);
	}
}

static int run(void)
{
	int data = open("/data/f", O_RDWR);
	int bound = open("/etc/bound", O_RDONLY);
	int alias = open("/alias", O_RDONLY);
	if (data < 0 || bound < 0 || alias < 0)
		die("open");
	if (lseek(data, 3, SEEK_SET) != 3)
		die("lseek");
	if (chdir("/data"))
		die("chdir /data");
	struct sigaction sa = { .sa_handler = on_usr1 };
	sigaction(SIGUSR1, &sa, NULL);
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, &old);
	dprintf(3, "%d\n", getpid());
	close(3);
	while (!go)
		sigsuspend(&old);

	char buf[256], name[256];
	gethostname(name, sizeof name);
	CHECK(!strcmp(name, "crust-mnt"), "hostname %s", name);
	getdomainname(name, sizeof name);
	CHECK(!strcmp(name, "crust.test"), "domainname %s", name);
	CHECK(lseek(data, 0, SEEK_CUR) == 3, "offset of /data/f");
	memset(buf, 0, sizeof buf);
	CHECK(pread(data, buf, sizeof buf - 1, 0) == 5 && !strcmp(buf, "data\n"), "/data/f through its fd: %s", buf);
	CHECK(write(data, "A", 1) == 1, "write /data/f: %s", strerror(errno));
	memset(buf, 0, sizeof buf);
	CHECK(pread(bound, buf, sizeof buf - 1, 0) > 0 && !strcmp(buf, "bound\n"), "/etc/bound through its fd: %s", buf);
	read_file("/etc/bound", buf, sizeof buf);
	CHECK(!strcmp(buf, "bound\n"), "/etc/bound by path: %s", buf);
	memset(buf, 0, sizeof buf);
	CHECK(pread(alias, buf, sizeof buf - 1, 0) > 0 && !strcmp(buf, "alias\n"), "/alias through its fd: %s", buf);
	read_file("/inner/x", buf, sizeof buf);
	CHECK(!strcmp(buf, "inner\n"), "/inner/x: %s", buf);
	read_file("/ro/file", buf, sizeof buf);
	CHECK(!strcmp(buf, "ro\n"), "/ro/file: %s", buf);
	errno = 0;
	int w = open("/ro/file", O_WRONLY);
	CHECK(w < 0 && errno == EROFS, "open /ro/file for writing: %d %s", w, strerror(errno));
	errno = 0;
	w = open("/ro/new", O_WRONLY | O_CREAT, 0644);
	CHECK(w < 0 && errno == EROFS, "create /ro/new: %d %s", w, strerror(errno));
	errno = 0;
	w = open("/alias", O_WRONLY);
	CHECK(w < 0 && errno == EROFS, "open /alias for writing: %d %s", w, strerror(errno));
	char *cwd = getcwd(buf, sizeof buf);
	CHECK(cwd && !strcmp(cwd, "/data"), "cwd %s", cwd ? cwd : strerror(errno));
	struct stat st;
	CHECK(stat("/old", &st) && stat("/work", &st) && stat("/tmp", &st), "a directory of the old root is still there");

	int out = open("/data/result", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (failure[0])
		dprintf(out, "FAIL: %s\n", failure);
	else
		dprintf(out, "PASS\n");
	close(out);
	return failure[0] ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc == 6 && !strcmp(argv[1], "launch"))
		return launch(argv);
	if (argc == 2 && !strcmp(argv[1], "run"))
		return run();
	fprintf(stderr, "usage: mnt_tree launch ROOT HOSTDIR HOSTFILE RODIR | run\n");
	return 2;
}
