/* ct_init.c: not a test. The container flavor's launcher: `ct_init PROGRAM ARGS...`
 * (PROGRAM is a path inside the rootfs) builds a minimal container around the test and
 * becomes its init, the way a container runtime does:
 *
 * 1. joins the cgroups whose `cgroup.procs` files ZDTM_CGROUPS lists (one a line);
 * 2. with ZDTM_USERNS=FIRST:COUNT, enters a new user namespace whose root is host uid and
 *    gid FIRST (the parent side writes uid_map and gid_map, as a runtime does);
 * 3. unshares new mount, UTS, IPC, network, cgroup and pid namespaces and forks their
 *    init (pid 1); the launcher writes "nsinit <host pid of it>" into the ready pipe and
 *    exits;
 * 4. the init binds the rootfs ZDTM_ROOTFS read-only onto itself and mounts in it a tmpfs
 *    /dev with the usual nodes (mknod; bound from the host's /dev in a user namespace,
 *    where mknod is not allowed), devpts, /dev/shm, mqueue, proc, sysfs (read-only),
 *    cgroup2 at /sys/fs/cgroup (read-only), a tmpfs /tmp and the test's output directory
 *    ZDTM_OUTDIR at /zdtm; pivot_root into it, sets the hostname ZDTM_HOSTNAME, brings
 *    `lo` up and re-executes itself from the rootfs (ZDTM_CT_INIT, a path inside it), so
 *    that nothing of the dumped tree lies outside the container's mounts;
 * 5. it then waits for the harness to write into the pipe ZDTM_GO_FD (the harness gives
 *    the network namespace its veth meanwhile), starts PROGRAM in /zdtm with
 *    ZDTM_OUTDIR=/zdtm, and reaps whatever ends up as its child, forever.
 *
 * A step that fails writes "error <what>: <why>" into the ready pipe and exits non-zero,
 * which the harness reports as the test's failure. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

static int ready_fd = -1;

/* Reports a failed step on the ready pipe and exits. */
static void __attribute__((noreturn, format(printf, 1, 2))) die(const char *fmt, ...)
{
	char text[1024];
	int saved = errno;
	va_list args;

	va_start(args, fmt);
	vsnprintf(text, sizeof(text), fmt, args);
	va_end(args);
	dprintf(ready_fd, "error ct_init: %s: %s\n", text, strerror(saved));
	_exit(3);
}

static const char *need_env(const char *name)
{
	const char *value = getenv(name);

	if (!value || !*value) {
		errno = EINVAL;
		die("%s not set", name);
	}
	return value;
}

static void write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	if (fd < 0)
		die("open %s", path);
	if (write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		die("write %s into %s", text, path);
	close(fd);
}

/* Writes our pid into every cgroup.procs file listed in `list` (one a line). */
static void join_cgroups(const char *list)
{
	char pid[32], path[4096];
	const char *line = list;

	snprintf(pid, sizeof(pid), "%d\n", getpid());
	while (*line) {
		size_t len = strcspn(line, "\n");

		if (len > 0 && len < sizeof(path)) {
			memcpy(path, line, len);
			path[len] = 0;
			write_file(path, pid);
		}
		line += len;
		if (*line == '\n')
			line++;
	}
}

static void must_read(int fd, const char *what)
{
	char byte;

	if (read(fd, &byte, 1) != 1) {
		if (errno == 0)
			errno = EPIPE;
		die("wait for %s", what);
	}
}

/* Step 2: a child enters a new user namespace; this process (outside) writes its maps
 * and waits for it. Returns in the child, as root of the new namespace. */
static void enter_user_namespace(const char *spec)
{
	unsigned long first, count;
	int to_parent[2], to_child[2], status;
	char map[128], path[64];
	pid_t child;

	if (sscanf(spec, "%lu:%lu", &first, &count) != 2) {
		errno = EINVAL;
		die("ZDTM_USERNS=%s is not FIRST:COUNT", spec);
	}
	if (pipe2(to_parent, O_CLOEXEC) || pipe2(to_child, O_CLOEXEC))
		die("pipe");
	child = fork();
	if (child < 0)
		die("fork");
	if (child == 0) {
		if (unshare(CLONE_NEWUSER) != 0)
			die("unshare(CLONE_NEWUSER)");
		if (write(to_parent[1], "u", 1) != 1)
			die("write to parent");
		must_read(to_child[0], "the uid and gid maps");
		close(to_parent[1]);
		close(to_child[0]);
		if (setresgid(0, 0, 0) || setgroups(0, NULL) || setresuid(0, 0, 0))
			die("become root of the user namespace");
		return;
	}
	close(to_parent[1]);
	must_read(to_parent[0], "the child's user namespace");
	snprintf(map, sizeof(map), "0 %lu %lu\n", first, count);
	snprintf(path, sizeof(path), "/proc/%d/uid_map", child);
	write_file(path, map);
	snprintf(path, sizeof(path), "/proc/%d/gid_map", child);
	write_file(path, map);
	if (write(to_child[1], "m", 1) != 1)
		die("write to child");
	if (waitpid(child, &status, 0) != child)
		die("wait for the launcher in the user namespace");
	_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 4);
}

static void must_mount(const char *source, const char *target, const char *type, unsigned long flags,
		       const char *data)
{
	if (mount(source, target, type, flags, data) != 0)
		die("mount %s (%s) on %s", source ? source : "-", type ? type : "bind/remount", target);
}

/* MS_* flags a read-only remount of the bind at `path` must keep: in a user namespace
 * the flags of mounts inherited from the host are locked. */
static unsigned long kept_flags(const char *path)
{
	struct statvfs info;
	unsigned long flags = 0;

	if (statvfs(path, &info) != 0)
		die("statvfs %s", path);
	if (info.f_flag & ST_NOSUID)
		flags |= MS_NOSUID;
	if (info.f_flag & ST_NODEV)
		flags |= MS_NODEV;
	if (info.f_flag & ST_NOEXEC)
		flags |= MS_NOEXEC;
	if (info.f_flag & ST_NOATIME)
		flags |= MS_NOATIME;
	if (info.f_flag & ST_NODIRATIME)
		flags |= MS_NODIRATIME;
	if (info.f_flag & ST_RELATIME)
		flags |= MS_RELATIME;
	return flags;
}

static void path_in(char *buf, size_t size, const char *root, const char *relative)
{
	if ((size_t)snprintf(buf, size, "%s/%s", root, relative) >= size) {
		errno = ENAMETOOLONG;
		die("path %s/%s", root, relative);
	}
}

static void must_mkdir(const char *path, mode_t mode)
{
	if (mkdir(path, mode) != 0 && errno != EEXIST)
		die("mkdir %s", path);
}

/* The device nodes of a container's /dev. */
static const struct {
	const char *name;
	unsigned int major, minor;
} devices[] = {
	{ "null", 1, 3 }, { "zero", 1, 5 }, { "full", 1, 7 }, { "random", 1, 8 }, { "urandom", 1, 9 }, { "tty", 5, 0 },
};

static void populate_dev(const char *dev, int in_userns)
{
	static const char *const links[][2] = {
		{ "fd", "/proc/self/fd" },	    { "stdin", "/proc/self/fd/0" }, { "stdout", "/proc/self/fd/1" },
		{ "stderr", "/proc/self/fd/2" }, { "ptmx", "pts/ptmx" },
	};
	char path[4096], host[64];

	for (size_t i = 0; i < sizeof(devices) / sizeof(devices[0]); i++) {
		path_in(path, sizeof(path), dev, devices[i].name);
		if (in_userns) {
			/* mknod is not allowed in a user namespace: bind the host's node, as
			 * runc does. */
			int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0666);

			if (fd < 0)
				die("create %s", path);
			close(fd);
			snprintf(host, sizeof(host), "/dev/%s", devices[i].name);
			must_mount(host, path, NULL, MS_BIND, NULL);
		} else {
			if (mknod(path, S_IFCHR | 0666, makedev(devices[i].major, devices[i].minor)) != 0)
				die("mknod %s", path);
			if (chmod(path, 0666) != 0)
				die("chmod %s", path);
		}
	}
	for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++) {
		path_in(path, sizeof(path), dev, links[i][0]);
		if (symlink(links[i][1], path) != 0)
			die("symlink %s", path);
	}
}

/* Step 4: the container's mounts, then pivot_root into the rootfs. */
static void build_root(const char *rootfs, const char *outdir, int in_userns)
{
	char path[4096];

	must_mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
	must_mount(rootfs, rootfs, NULL, MS_BIND, NULL);
	must_mount(NULL, rootfs, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | kept_flags(rootfs), NULL);

	path_in(path, sizeof(path), rootfs, "dev");
	must_mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k");
	populate_dev(path, in_userns);
	path_in(path, sizeof(path), rootfs, "dev/pts");
	must_mkdir(path, 0755);
	must_mount("devpts", path, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5");
	path_in(path, sizeof(path), rootfs, "dev/shm");
	must_mkdir(path, 01777);
	must_mount("shm", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k");
	path_in(path, sizeof(path), rootfs, "dev/mqueue");
	must_mkdir(path, 0755);
	must_mount("mqueue", path, "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);

	path_in(path, sizeof(path), rootfs, "proc");
	must_mount("proc", path, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	path_in(path, sizeof(path), rootfs, "sys");
	must_mount("sysfs", path, "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, NULL);
	path_in(path, sizeof(path), rootfs, "sys/fs/cgroup");
	must_mount("cgroup2", path, "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, NULL);
	path_in(path, sizeof(path), rootfs, "tmp");
	must_mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
	path_in(path, sizeof(path), rootfs, "zdtm");
	must_mount(outdir, path, NULL, MS_BIND, NULL);

	if (chdir(rootfs) != 0)
		die("chdir %s", rootfs);
	if (syscall(SYS_pivot_root, ".", ".") != 0)
		die("pivot_root %s", rootfs);
	if (umount2(".", MNT_DETACH) != 0)
		die("detach the old root");
	if (chdir("/") != 0)
		die("chdir /");
}

static void loopback_up(void)
{
	struct ifreq request = { 0 };
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		die("socket for lo");
	strcpy(request.ifr_name, "lo");
	if (ioctl(fd, SIOCGIFFLAGS, &request) != 0)
		die("SIOCGIFFLAGS lo");
	request.ifr_flags |= IFF_UP;
	if (ioctl(fd, SIOCSIFFLAGS, &request) != 0)
		die("SIOCSIFFLAGS lo up");
	close(fd);
}

/* Step 5, in the init re-executed from the rootfs (`ct_init --init PROGRAM ARGS...`): its
 * executable and libraries now lie inside the container, as a runtime's init does once it
 * execs the container's program. */
static int run_init(char **argv)
{
	int go_fd = atoi(need_env("ZDTM_GO_FD"));
	pid_t test;
	int null_fd;

	must_read(go_fd, "the harness's go (network set up)");
	close(go_fd);
	setsid();
	null_fd = open("/dev/null", O_RDWR);
	if (null_fd < 0)
		die("open /dev/null");
	dup2(null_fd, 0);
	dup2(null_fd, 1);
	dup2(null_fd, 2);
	if (null_fd > 2)
		close(null_fd);
	if (chdir("/zdtm") != 0)
		die("chdir /zdtm");
	setenv("ZDTM_OUTDIR", "/zdtm", 1);
	unsetenv("ZDTM_GO_FD");
	test = fork();
	if (test < 0)
		die("fork the test");
	if (test == 0) {
		execv(argv[0], argv);
		die("exec %s", argv[0]);
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
	const char *userns = getenv("ZDTM_USERNS");
	const char *cgroups = getenv("ZDTM_CGROUPS");
	const char *rootfs, *outdir, *hostname, *self;
	char **init_argv;
	pid_t init;

	ready_fd = fd_text ? atoi(fd_text) : -1;
	if (argc < 2 || ready_fd < 0) {
		fprintf(stderr, "usage: ZDTM_READY_FD=N ZDTM_GO_FD=N ZDTM_ROOTFS=DIR ZDTM_OUTDIR=DIR "
				"ZDTM_HOSTNAME=NAME ZDTM_CT_INIT=PATH ct_init PROGRAM ARGS...\n");
		return 2;
	}
	if (!strcmp(argv[1], "--init")) {
		if (argc < 3) {
			errno = EINVAL;
			die("--init without a program");
		}
		return run_init(argv + 2);
	}
	rootfs = need_env("ZDTM_ROOTFS");
	outdir = need_env("ZDTM_OUTDIR");
	hostname = need_env("ZDTM_HOSTNAME");
	self = need_env("ZDTM_CT_INIT");
	need_env("ZDTM_GO_FD");

	if (cgroups)
		join_cgroups(cgroups);
	if (userns && *userns)
		enter_user_namespace(userns);
	if (unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWCGROUP | CLONE_NEWPID) != 0)
		die("unshare mount, UTS, IPC, network, cgroup and pid namespaces");
	init = fork();
	if (init < 0)
		die("fork the init");
	if (init > 0) {
		dprintf(ready_fd, "nsinit %d\n", init);
		return 0;
	}

	/* The init: pid 1 of the new pid namespace. */
	build_root(rootfs, outdir, userns && *userns);
	if (sethostname(hostname, strlen(hostname)) != 0)
		die("sethostname %s", hostname);
	loopback_up();
	unsetenv("ZDTM_ROOTFS");
	unsetenv("ZDTM_CGROUPS");
	unsetenv("ZDTM_USERNS");
	unsetenv("ZDTM_HOSTNAME");
	unsetenv("ZDTM_CT_INIT");
	init_argv = calloc(argc + 2, sizeof(char *));
	if (!init_argv)
		die("calloc");
	init_argv[0] = "ct_init";
	init_argv[1] = "--init";
	for (int i = 1; i < argc; i++)
		init_argv[i + 1] = argv[i];
	execv(self, init_argv);
	die("exec %s inside the rootfs", self);
}
