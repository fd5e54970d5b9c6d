/* mnt_shapes: kernel filesystems and mount shapes made by the test in its own mount
 * namespace (the mntns flavor), kept across the dump. By argument:
 * - `tmpfs`: a tmpfs holding a 4 MiB file with three data runs and holes, a fifo, a
 *   character device, a hard link, a symlink, a name over 100 bytes and a directory
 *   with mode 0710; after the restore the files, their data, their holes (SEEK_DATA
 *   runs), modes and links are the same, and it is a tmpfs mount of its own;
 * - `propagation`: a tmpfs `a` made shared, `b` a bind of it (its peer), `c` a bind of
 *   it made a slave, `d` a bind made unbindable; after the restore a mount made under
 *   `a` shows in `b` and `c`, one made under `c` not in `a`, and binding `d` fails with
 *   EINVAL;
 * - `overmount`: a tmpfs with a file, covered by a second tmpfs at the same place; after
 *   the restore the top one is seen, and once it is detached the covered one's file is
 *   there again.
 * A restore that brings the process back without its mounts fails every one (the
 * harness compares the namespace's mountinfo too). Refuses to run outside a flavor with
 * namespaces of its own (host name not zdtm-...). */
#define _GNU_SOURCE
#include "zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define TMPFS_MAGIC_NUMBER 0x01021994
#define MIB (1024 * 1024)

static char base[4096];

static const char *at(const char *name)
{
	static char paths[8][4300];
	static int next;
	char *path = paths[next++ % 8];
	snprintf(path, sizeof paths[0], "%s/%s", base, name);
	return path;
}

static void make_dir(const char *path, mode_t mode)
{
	if (mkdir(path, mode) && errno != EEXIST)
		fail("mkdir %s: %m", path);
}

static void mount_tmpfs(const char *path)
{
	make_dir(path, 0755);
	if (mount("tmpfs", path, "tmpfs", 0, "size=16m,mode=755"))
		fail("mount a tmpfs at %s: %m", path);
}

static void write_at(const char *path, off_t offset, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT, 0640);
	if (fd < 0 || pwrite(fd, text, strlen(text), offset) != (ssize_t)strlen(text))
		fail("write %s: %m", path);
	close(fd);
}

static void expect_text(const char *path, off_t offset, const char *text)
{
	char buf[256] = "";
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		fail("open %s: %m", path);
	if (pread(fd, buf, strlen(text), offset) != (ssize_t)strlen(text) || memcmp(buf, text, strlen(text)))
		fail("%s at %lld: '%s', not '%s'", path, (long long)offset, buf, text);
	close(fd);
}

static int is_tmpfs_mount(const char *path)
{
	struct statfs fs;
	struct stat here, up;
	char parent[4400];
	snprintf(parent, sizeof parent, "%s/..", path);
	if (statfs(path, &fs) || stat(path, &here) || stat(parent, &up))
		fail("stat %s: %m", path);
	return (unsigned long)fs.f_type == TMPFS_MAGIC_NUMBER && here.st_dev != up.st_dev;
}

/* The data runs of `path` as offset:length pairs. */
static void data_runs(const char *path, char *out, size_t size)
{
	int fd = open(path, O_RDONLY);
	off_t offset = 0, end;
	size_t used = 0;
	if (fd < 0)
		fail("open %s: %m", path);
	end = lseek(fd, 0, SEEK_END);
	out[0] = 0;
	while (offset < end) {
		off_t data = lseek(fd, offset, SEEK_DATA), hole;
		if (data < 0)
			break;
		hole = lseek(fd, data, SEEK_HOLE);
		used += snprintf(out + used, size - used, "%lld:%lld ", (long long)data, (long long)(hole - data));
		offset = hole;
	}
	close(fd);
}

static char runs_before[1024];

static void tmpfs_before(void)
{
	const char *t = at("shapes.tmpfs");
	char path[4400], long_name[200];
	mount_tmpfs(t);
	snprintf(path, sizeof path, "%s/holes", t);
	write_at(path, 0, "first run");
	write_at(path, 1 * MIB, "second run");
	write_at(path, 3 * MIB + 4096, "third run");
	if (truncate(path, 4 * MIB))
		fail("truncate %s: %m", path);
	data_runs(path, runs_before, sizeof runs_before);
	snprintf(path, sizeof path, "%s/fifo", t);
	if (mkfifo(path, 0604))
		fail("mkfifo %s: %m", path);
	snprintf(path, sizeof path, "%s/null", t);
	if (mknod(path, S_IFCHR | 0666, makedev(1, 3)))
		fail("mknod %s: %m", path);
	snprintf(path, sizeof path, "%s/dir", t);
	make_dir(path, 0710);
	if (chmod(path, 0710))
		fail("chmod %s: %m", path);
	memset(long_name, 'n', 150);
	long_name[150] = 0;
	snprintf(path, sizeof path, "%s/dir/%s", t, long_name);
	write_at(path, 0, "long name");
	char linked[4400];
	snprintf(linked, sizeof linked, "%s/hardlink", t);
	if (link(path, linked))
		fail("link %s: %m", linked);
	snprintf(path, sizeof path, "%s/symlink", t);
	if (symlink("dir/target-text", path))
		fail("symlink %s: %m", path);
}

static void tmpfs_after(void)
{
	const char *t = at("shapes.tmpfs");
	char path[4400], long_name[200], runs[1024];
	struct stat st, other;
	if (!is_tmpfs_mount(t))
		fail("%s is not a tmpfs mount of its own", t);
	snprintf(path, sizeof path, "%s/holes", t);
	expect_text(path, 0, "first run");
	expect_text(path, 1 * MIB, "second run");
	expect_text(path, 3 * MIB + 4096, "third run");
	if (stat(path, &st) || st.st_size != 4 * MIB)
		fail("%s: size %lld, not 4 MiB", path, (long long)st.st_size);
	data_runs(path, runs, sizeof runs);
	if (strcmp(runs, runs_before))
		fail("%s: data runs %s, before the dump %s", path, runs, runs_before);
	snprintf(path, sizeof path, "%s/fifo", t);
	if (lstat(path, &st) || !S_ISFIFO(st.st_mode) || (st.st_mode & 07777) != 0604)
		fail("%s is not a fifo with mode 0604", path);
	snprintf(path, sizeof path, "%s/null", t);
	if (lstat(path, &st) || !S_ISCHR(st.st_mode) || st.st_rdev != makedev(1, 3))
		fail("%s is not the 1:3 character device", path);
	snprintf(path, sizeof path, "%s/dir", t);
	if (lstat(path, &st) || (st.st_mode & 07777) != 0710)
		fail("%s has mode %o, not 0710", path, st.st_mode & 07777);
	memset(long_name, 'n', 150);
	long_name[150] = 0;
	snprintf(path, sizeof path, "%s/dir/%s", t, long_name);
	expect_text(path, 0, "long name");
	char linked[4400];
	snprintf(linked, sizeof linked, "%s/hardlink", t);
	if (stat(path, &st) || stat(linked, &other) || st.st_ino != other.st_ino || st.st_nlink != 2)
		fail("%s is not a hard link of %s", linked, path);
	char target[256] = "";
	snprintf(path, sizeof path, "%s/symlink", t);
	if (readlink(path, target, sizeof target - 1) < 0 || strcmp(target, "dir/target-text"))
		fail("%s points to '%s'", path, target);
}

static void propagation_before(void)
{
	mount_tmpfs(at("shapes.a"));
	if (mount(NULL, at("shapes.a"), NULL, MS_SHARED, NULL))
		fail("make %s shared: %m", at("shapes.a"));
	make_dir(at("shapes.a/sub"), 0755);
	const char *binds[] = { "shapes.b", "shapes.c", "shapes.d" };
	for (int i = 0; i < 3; i++) {
		make_dir(at(binds[i]), 0755);
		if (mount(at("shapes.a"), at(binds[i]), NULL, MS_BIND, NULL))
			fail("bind %s: %m", at(binds[i]));
	}
	if (mount(NULL, at("shapes.c"), NULL, MS_SLAVE, NULL))
		fail("make %s a slave: %m", at("shapes.c"));
	if (mount(NULL, at("shapes.d"), NULL, MS_UNBINDABLE, NULL))
		fail("make %s unbindable: %m", at("shapes.d"));
}

static void propagation_after(void)
{
	make_dir(at("shapes.a/sub/x"), 0755);
	if (mount("tmpfs", at("shapes.a/sub/x"), "tmpfs", 0, "size=1m"))
		fail("mount under %s: %m", at("shapes.a"));
	if (!is_tmpfs_mount(at("shapes.b/sub/x")))
		fail("a mount under the shared %s does not show in its peer %s", at("shapes.a"), at("shapes.b"));
	if (!is_tmpfs_mount(at("shapes.c/sub/x")))
		fail("a mount under the shared %s does not show in its slave %s", at("shapes.a"), at("shapes.c"));
	make_dir(at("shapes.c/sub/y"), 0755);
	if (mount("tmpfs", at("shapes.c/sub/y"), "tmpfs", 0, "size=1m"))
		fail("mount under %s: %m", at("shapes.c"));
	if (is_tmpfs_mount(at("shapes.a/sub/y")))
		fail("a mount under the slave %s shows in its master %s", at("shapes.c"), at("shapes.a"));
	make_dir(at("shapes.e"), 0755);
	errno = 0;
	if (mount(at("shapes.d"), at("shapes.e"), NULL, MS_BIND, NULL) == 0 || errno != EINVAL)
		fail("binding the unbindable %s: %m, not EINVAL", at("shapes.d"));
}

static void overmount_before(void)
{
	mount_tmpfs(at("shapes.o"));
	write_at(at("shapes.o/covered"), 0, "covered");
	mount_tmpfs(at("shapes.o"));
	write_at(at("shapes.o/top"), 0, "top");
}

static void overmount_after(void)
{
	expect_text(at("shapes.o/top"), 0, "top");
	if (access(at("shapes.o/covered"), F_OK) == 0)
		fail("the covered file shows through the top mount");
	if (umount2(at("shapes.o"), MNT_DETACH))
		fail("detach the top mount: %m");
	expect_text(at("shapes.o/covered"), 0, "covered");
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "tmpfs";
	test_init("mnt_shapes", argc, argv);
	char host[256] = "";
	gethostname(host, sizeof host);
	if (strncmp(host, "zdtm-", 5))
		test_skip("not in namespaces of its own (the host name is not zdtm-...)");
	test_path(base, sizeof base, "");
	size_t len = strlen(base);
	while (len > 1 && base[len - 1] == '/')
		base[--len] = 0;

	if (!strcmp(mode, "tmpfs"))
		tmpfs_before();
	else if (!strcmp(mode, "propagation"))
		propagation_before();
	else if (!strcmp(mode, "overmount"))
		overmount_before();
	else
		fail("unknown mode %s", mode);

	test_ready();
	test_waitsig();

	if (!strcmp(mode, "tmpfs"))
		tmpfs_after();
	else if (!strcmp(mode, "propagation"))
		propagation_after();
	else
		overmount_after();
	pass();
}
