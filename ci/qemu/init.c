/* /init of the crust test VMs (cargo xtest zdtm --arch ...): moves the root onto a bind
 * mount of the initramfs (pivot_root, which the container flavor's init uses, refuses a
 * root on the initramfs itself), mounts the pseudo filesystems and cgroup2, runs the
 * zdtm harness with the arguments listed in /crust/args (one per
 * line), prints its JSON report to the console between markers (and, when /crust/export
 * names a directory, its image files in hex; when /crust/keep names one, the logs under
 * it), and powers off. Before the harness it loads
 * the modules in /modules (sock_diag, bridge, veth, nf_tables) and brings the loopback
 * interface up.
 * Built static with the target's cross gcc by xtask/src/qemu.rs. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void must_mount(const char *source, const char *target, const char *type)
{
	mkdir(target, 0755);
	if (mount(source, target, type, 0, NULL) != 0)
		printf("crust-init: mount %s on %s: %s\n", type, target, strerror(errno));
}

static void print_file(const char *path)
{
	char buf[4096];
	ssize_t n;
	int fd = open(path, O_RDONLY);

	if (fd < 0) {
		printf("crust-init: open %s: %s\n", path, strerror(errno));
		return;
	}
	fflush(stdout);
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		if (write(1, buf, n) != n)
			break;
	close(fd);
}

/* Prints every crust log under dir (depth-limited): after a failed run the console is
 * all there is to read. */
static void print_logs(const char *dir, int depth)
{
	struct dirent *entry;
	char path[1024];
	DIR *d;

	if (depth > 3 || !(d = opendir(dir)))
		return;
	while ((entry = readdir(d))) {
		size_t len = strlen(entry->d_name);

		if (entry->d_name[0] == '.' || !strcmp(entry->d_name, "bin"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, entry->d_name);
		if (entry->d_type == DT_DIR) {
			print_logs(path, depth + 1);
		} else if (len > 4 && !strcmp(entry->d_name + len - 4, ".log")) {
			printf("--- %s ---\n", path);
			print_file(path);
			printf("\n");
		}
	}
	closedir(d);
}

static int has_suffix(const char *name, const char *suffix)
{
	size_t len = strlen(name), suffix_len = strlen(suffix);

	return len > suffix_len && !strcmp(name + len - suffix_len, suffix);
}

/* Prints the regular file path in hex between markers, under the relative name name
 * (xtask turns it back into a file): "CRUST-FILE name size", 32 bytes a line,
 * "CRUST-FILE-END". */
static void export_file(const char *path, const char *name)
{
	static const char digits[] = "0123456789abcdef";
	char line[80];
	unsigned char buf[32];
	struct stat st;
	ssize_t n;
	int fd;

	if (stat(path, &st) || !S_ISREG(st.st_mode) || (fd = open(path, O_RDONLY)) < 0)
		return;
	printf("CRUST-FILE %s %lld\n", name, (long long)st.st_size);
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		for (ssize_t i = 0; i < n; i++) {
			line[2 * i] = digits[buf[i] >> 4];
			line[2 * i + 1] = digits[buf[i] & 15];
		}
		line[2 * n] = '\n';
		if (write(1, line, 2 * n + 1) != 2 * n + 1)
			break;
	}
	close(fd);
	printf("CRUST-FILE-END\n");
}

/* Every *.img file of dir (`cargo xtest qemu export`). */
static void export_images(const char *dir)
{
	struct dirent *entry;
	char path[2048];
	DIR *d = opendir(dir);

	if (!d) {
		printf("crust-init: export %s: %s\n", dir, strerror(errno));
		return;
	}
	while ((entry = readdir(d))) {
		if (!has_suffix(entry->d_name, ".img"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, entry->d_name);
		export_file(path, entry->d_name);
	}
	closedir(d);
}

/* Every log, stderr capture, verdict and pid file under dir, named by its path below
 * the top (`--keep`): TEST/TEST.log, TEST/img-0/dump.log, ... The images stay behind. */
static void export_logs(const char *dir, const char *relative, int depth)
{
	struct dirent *entry;
	char path[2048], name[1024];
	DIR *d;

	if (depth > 3 || !(d = opendir(dir)))
		return;
	while ((entry = readdir(d))) {
		if (entry->d_name[0] == '.' || (depth == 0 && !strcmp(entry->d_name, "bin")))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, entry->d_name);
		snprintf(name, sizeof(name), "%s%s%s", relative, *relative ? "/" : "", entry->d_name);
		if (entry->d_type == DT_DIR)
			export_logs(path, name, depth + 1);
		else if (has_suffix(entry->d_name, ".log") || has_suffix(entry->d_name, ".stderr") ||
			 has_suffix(entry->d_name, ".out") || has_suffix(entry->d_name, ".pid"))
			export_file(path, name);
	}
	closedir(d);
}

/* The first line of file, or "" (static buffer). */
static const char *first_line(const char *file)
{
	static char text[1024];
	ssize_t got;
	int fd = open(file, O_RDONLY);

	text[0] = 0;
	if (fd < 0)
		return text;
	got = read(fd, text, sizeof(text) - 1);
	close(fd);
	text[got > 0 ? got : 0] = 0;
	text[strcspn(text, "\n")] = 0;
	return text;
}

/* Loads every module under /modules in name order (what Debian builds as modules and
 * the tests need: sock_diag, bridge, veth, nf_tables; xtask numbers them in load
 * order). */
static void load_modules(void)
{
	struct dirent **entries;
	char path[512];
	int count = scandir("/modules", &entries, NULL, alphasort);

	for (int i = 0; i < count; i++) {
		int fd;

		if (entries[i]->d_name[0] != '.') {
			snprintf(path, sizeof(path), "/modules/%s", entries[i]->d_name);
			fd = open(path, O_RDONLY | O_CLOEXEC);
			if (fd < 0 || syscall(SYS_finit_module, fd, "", 0) != 0)
				printf("crust-init: load %s: %s\n", path, strerror(errno));
			if (fd >= 0)
				close(fd);
		}
		free(entries[i]);
	}
	if (count >= 0)
		free(entries);
}

/* Brings the loopback interface up: the socket tests bind and connect on it. */
static void loopback_up(void)
{
	struct ifreq request = { 0 };
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	strcpy(request.ifr_name, "lo");
	if (fd < 0 || ioctl(fd, SIOCGIFFLAGS, &request) != 0) {
		printf("crust-init: lo: %s\n", strerror(errno));
	} else {
		request.ifr_flags |= IFF_UP | IFF_RUNNING;
		if (ioctl(fd, SIOCSIFFLAGS, &request) != 0)
			printf("crust-init: lo up: %s\n", strerror(errno));
	}
	if (fd >= 0)
		close(fd);
}

/* pivot_root(2) refuses a caller whose root is the initramfs (rootfs has no parent
 * mount): make the root a bind mount of it, the way switch_root moves a real root in. */
static void root_on_a_mount(void)
{
	mkdir("/.root", 0755);
	if (mount("/", "/.root", NULL, MS_BIND | MS_REC, NULL) != 0 || chdir("/.root") != 0 ||
	    mount(".", "/", NULL, MS_MOVE, NULL) != 0 || chroot(".") != 0 || chdir("/") != 0)
		printf("crust-init: root on a bind mount: %s\n", strerror(errno));
}

int main(void)
{
	char *argv[64];
	static char args[8192];
	int argc = 0, status = 0;
	ssize_t len;
	pid_t pid;
	int fd;

	root_on_a_mount();
	must_mount("proc", "/proc", "proc");
	must_mount("sysfs", "/sys", "sysfs");
	must_mount("devtmpfs", "/dev", "devtmpfs");
	/* ptys (pty_pair, --shell-job): devpts, and /dev/ptmx if devtmpfs has none. */
	mkdir("/dev/pts", 0755);
	if (mount("devpts", "/dev/pts", "devpts", 0, "ptmxmode=0666,mode=0620") != 0)
		printf("crust-init: mount devpts on /dev/pts: %s\n", strerror(errno));
	if (access("/dev/ptmx", F_OK) != 0 && symlink("pts/ptmx", "/dev/ptmx") != 0)
		printf("crust-init: /dev/ptmx: %s\n", strerror(errno));
	/* The container flavor's per-test cgroups (memory, pids) and freezer: cgroup v2. */
	if (mount("cgroup2", "/sys/fs/cgroup", "cgroup2", 0, NULL) != 0)
		printf("crust-init: mount cgroup2 on /sys/fs/cgroup: %s\n", strerror(errno));
	/* /tmp stays on the initramfs (already a tmpfs): the C tests may live under it. */
	mkdir("/tmp", 01777);
	setvbuf(stdout, NULL, _IONBF, 0);
	load_modules();
	loopback_up();
	/* As on the CI hosts (a container's 1048576), not the kernel's 1024 for init: crust
	 * parks descriptors far above the target's. */
	{
		struct rlimit files = { 1048576, 1048576 };

		if (setrlimit(RLIMIT_NOFILE, &files) != 0)
			printf("crust-init: RLIMIT_NOFILE: %s\n", strerror(errno));
	}

	argv[argc++] = "/crust/zdtm-runner";
	fd = open("/crust/args", O_RDONLY);
	len = fd < 0 ? 0 : read(fd, args, sizeof(args) - 1);
	if (len < 0)
		len = 0;
	args[len] = 0;
	for (char *line = strtok(args, "\n"); line && argc < 62; line = strtok(NULL, "\n"))
		argv[argc++] = line;
	argv[argc] = NULL;

	printf("crust-init: running");
	for (int i = 0; i < argc; i++)
		printf(" %s", argv[i]);
	printf("\n");
	pid = fork();
	if (pid == 0) {
		chdir("/tmp");
		execv(argv[0], argv);
		printf("crust-init: exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	/* Reap everything (orphans get reparented to us) until the harness ends. */
	for (;;) {
		int st;
		pid_t done = wait(&st);

		if (done == pid) {
			status = st;
			break;
		}
		if (done < 0 && errno != EINTR)
			break;
	}
	printf("\ncrust-init: harness exit status %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	if (status != 0)
		print_logs("/tmp/zdtm", 0);
	/* /crust/export names a directory of images to hand back to the host. */
	if (*first_line("/crust/export"))
		export_images(first_line("/crust/export"));
	/* /crust/keep names the harness's work directory, whose logs go back (--keep). */
	if (*first_line("/crust/keep"))
		export_logs(first_line("/crust/keep"), "", 0);
	printf("CRUST-ZDTM-JSON-BEGIN\n");
	print_file("/tmp/zdtm-report.json");
	printf("\nCRUST-ZDTM-JSON-END\n");
	printf("CRUST-ZDTM-EXIT %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	sync();
	reboot(RB_POWER_OFF);
	return 0;
}
