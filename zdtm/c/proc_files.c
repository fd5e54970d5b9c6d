/* proc_files: fds on /proc files of the tree are reopened for the restored processes.
 * The test holds /proc/self/stat, /proc/self/maps (read part way: the offset is kept),
 * /proc/self as a directory fd, and /proc/CHILD/status of its child; the child holds
 * /proc/PARENT/stat. After restore each names the process it named before, as the /proc
 * mount numbers it now (its pid field is what readlink("/proc/self") says now, its comm
 * is the one the process set, NSpid's last field is the pid the tree knows). */
#define _GNU_SOURCE
#include "tree_util.h"
#include <fcntl.h>
#include <sys/prctl.h>

/* The pid field and the comm of a stat text. */
static int parse_stat(const char *text, int *pid, char *comm, size_t size)
{
	const char *open = strchr(text, '('), *close = strrchr(text, ')');
	if (!open || !close || close < open || (size_t)(close - open) > size)
		return -1;
	*pid = atoi(text);
	memcpy(comm, open + 1, close - open - 1);
	comm[close - open - 1] = 0;
	return 0;
}

static int read_at(int fd, char *buf, size_t size)
{
	ssize_t n = pread(fd, buf, size - 1, 0);
	if (n < 0)
		return -1;
	buf[n] = 0;
	return 0;
}

/* NSpid's last field of a status text: the pid in the process's own namespace. */
static int status_nspid(const char *text)
{
	const char *at = strstr(text, "\nNSpid:");
	if (!at)
		return -1;
	const char *end = strchr(at + 1, '\n');
	const char *last = at + 7;
	for (const char *p = at + 7; p < (end ? end : p + strlen(p)); p++)
		if (*p == '\t' || *p == ' ')
			last = p + 1;
	return atoi(last);
}

static int proc_self_now(void)
{
	char link[64];
	ssize_t n = readlink("/proc/self", link, sizeof(link) - 1);
	if (n <= 0)
		return -1;
	link[n] = 0;
	return atoi(link);
}

static pid_t parent_pid;
/* /proc/PID of the test, PID as /proc numbers it. */
static char pid_path[64];

static int child(void *arg)
{
	(void)arg;
	prctl(PR_SET_NAME, "procf_child");
	char path[64], buf[4096], comm[64];
	/* Opened by the parent's number in the /proc the tree sees. */
	snprintf(path, sizeof(path), "%s/stat", pid_path);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		CHILD_FAIL("open %s: %m", path);
	int pid;
	if (read_at(fd, buf, sizeof(buf)) || parse_stat(buf, &pid, comm, sizeof(comm)))
		CHILD_FAIL("read %s", path);
	child_ready();
	test_waitsig();
	if (read_at(fd, buf, sizeof(buf)) || parse_stat(buf, &pid, comm, sizeof(comm)))
		CHILD_FAIL("read the parent's stat after restore: %m");
	if (strcmp(comm, "procf_parent"))
		CHILD_FAIL("the parent's stat fd names %d (%s), not the parent", pid, comm);
	if (getppid() != parent_pid)
		CHILD_FAIL("parent is %d, was %d", getppid(), parent_pid);
	return 0;
}

int main(int argc, char **argv)
{
	test_init("proc_files", argc, argv);
	prctl(PR_SET_NAME, "procf_parent");
	parent_pid = getpid();
	/* /proc/self/... as the process opens it: the link names its pid in /proc. */
	snprintf(pid_path, sizeof(pid_path), "/proc/%d", proc_self_now());
	int stat_fd = open("/proc/self/stat", O_RDONLY);
	int maps_fd = open("/proc/self/maps", O_RDONLY);
	int dir_fd = open("/proc/self", O_RDONLY | O_DIRECTORY);
	if (stat_fd < 0 || maps_fd < 0 || dir_fd < 0)
		fail("open /proc/self files: %m");
	char buf[8192], comm[64];
	if (read(maps_fd, buf, 10) != 10)
		fail("read maps: %m");
	pid_t kid = fork_child(child, NULL);
	/* The child's status by the number /proc gives it (its NSpid's first field). */
	char kid_path[64];
	snprintf(kid_path, sizeof(kid_path), "%s/task/%d/children", pid_path, proc_self_now());
	int children = open(kid_path, O_RDONLY);
	if (children < 0 || read_at(children, buf, sizeof(buf)))
		fail("read %s: %m", kid_path);
	close(children);
	snprintf(kid_path, sizeof(kid_path), "/proc/%d/status", atoi(buf));
	int kid_fd = open(kid_path, O_RDONLY);
	if (kid_fd < 0 || read_at(kid_fd, buf, sizeof(buf)) || status_nspid(buf) != kid)
		fail("open the child's status %s", kid_path);
	test_ready();
	test_waitsig();

	int pid;
	if (read_at(stat_fd, buf, sizeof(buf)) || parse_stat(buf, &pid, comm, sizeof(comm)))
		fail("read /proc/self/stat fd after restore: %m");
	if (pid != proc_self_now() || strcmp(comm, "procf_parent"))
		fail("stat fd names %d (%s), /proc/self is %d", pid, comm, proc_self_now());
	if (lseek(maps_fd, 0, SEEK_CUR) != 10)
		fail("maps fd offset %ld, was 10", (long)lseek(maps_fd, 0, SEEK_CUR));
	if (read_at(maps_fd, buf, sizeof(buf)) || !strstr(buf, "proc_files"))
		fail("maps fd does not show the test's own mappings");
	int status_fd = openat(dir_fd, "status", O_RDONLY);
	if (status_fd < 0 || read_at(status_fd, buf, sizeof(buf)) || status_nspid(buf) != getpid())
		fail("/proc/self directory fd names another process");
	if (read_at(kid_fd, buf, sizeof(buf)) || status_nspid(buf) != kid || !strstr(buf, "procf_child"))
		fail("the child's status fd names another process");
	if (reap_ok(kid))
		fail("child failed");
	pass();
}
