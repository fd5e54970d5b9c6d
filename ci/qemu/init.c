/* /init of the crust test VMs (cargo xtest zdtm --arch ...): mounts the pseudo
 * filesystems, runs the zdtm harness with the arguments listed in /crust/args (one per
 * line), prints its JSON report to the console between markers, and powers off.
 * Built static with the target's cross gcc by xtask/src/qemu.rs. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
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

int main(void)
{
	char *argv[64];
	static char args[8192];
	int argc = 0, status = 0;
	ssize_t len;
	pid_t pid;
	int fd;

	must_mount("proc", "/proc", "proc");
	must_mount("sysfs", "/sys", "sysfs");
	must_mount("devtmpfs", "/dev", "devtmpfs");
	must_mount("tmpfs", "/tmp", "tmpfs");
	setvbuf(stdout, NULL, _IONBF, 0);

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
	printf("CRUST-ZDTM-JSON-BEGIN\n");
	print_file("/tmp/zdtm-report.json");
	printf("\nCRUST-ZDTM-JSON-END\n");
	printf("CRUST-ZDTM-EXIT %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	sync();
	reboot(RB_POWER_OFF);
	return 0;
}
