/* mnt_binds: bind mounts made by the test in its own mount namespace (the mntns
 * flavor), kept across the dump: `dir` binds a directory, `file` a single file, `ro` a
 * directory read-only, each within the test's directory. Before the dump it opens the
 * file through the bind. After the restore, seen from inside (the flavor has no /proc,
 * so by statx mount ids and inode numbers): the bind is still a mount of its own over
 * the same inode as its source, the fd is still on the bind's mount at its offset, the
 * data is the same through the fd and by path, a file created through a directory bind
 * shows in its source (the same directory, not a copy), a write through a file bind
 * lands in its source, and `ro` refuses writes with EROFS while its source takes them.
 * A restore that puts the process back without its mount namespace fails every one.
 * Refuses to run outside the mntns flavor (host name not zdtm-...). */
#define _GNU_SOURCE
#include "zdtmtst.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

static const char pattern[] = "mnt_binds: the bound data\n";

static void write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		fail("write %s: %m", path);
	close(fd);
}

/* statx of `path` (or of `fd` with an empty path) with its mount id. */
static struct statx info(int fd, const char *path)
{
	struct statx st;
	if (statx(fd, path, path[0] ? 0 : AT_EMPTY_PATH, STATX_INO | STATX_MNT_ID, &st))
		fail("statx %s: %m", path[0] ? path : "of the fd");
	if (!(st.stx_mask & STATX_MNT_ID))
		fail("statx gives no mount id");
	return st;
}

static unsigned long long mnt_of(const char *path)
{
	return info(AT_FDCWD, path).stx_mnt_id;
}

/* The mount id of the directory holding `path`. */
static unsigned long long parent_mnt_of(const char *path)
{
	char copy[4096];
	snprintf(copy, sizeof copy, "%s", path);
	return mnt_of(dirname(copy));
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "dir";
	int file_mode = !strcmp(mode, "file"), ro = !strcmp(mode, "ro");
	test_init("mnt_binds", argc, argv);
	char host[256] = "";
	gethostname(host, sizeof host);
	if (strncmp(host, "zdtm-", 5))
		test_skip("not in the mntns flavor's namespaces (the host name is not zdtm-...)");

	char src[4096], dst[4096], name[64];
	snprintf(name, sizeof name, "mnt_binds-%s.src", mode);
	test_path(src, sizeof src, name);
	snprintf(name, sizeof name, "mnt_binds-%s.dst", mode);
	test_path(dst, sizeof dst, name);
	char src_file[4200], dst_file[4200];
	if (file_mode) {
		write_file(src, pattern);
		write_file(dst, "");
		snprintf(src_file, sizeof src_file, "%s", src);
		snprintf(dst_file, sizeof dst_file, "%s", dst);
	} else {
		if ((mkdir(src, 0755) && errno != EEXIST) || (mkdir(dst, 0755) && errno != EEXIST))
			fail("mkdir: %m");
		snprintf(src_file, sizeof src_file, "%s/file", src);
		snprintf(dst_file, sizeof dst_file, "%s/file", dst);
		write_file(src_file, pattern);
	}
	if (mount(src, dst, NULL, MS_BIND, NULL))
		fail("bind %s to %s: %m", src, dst);
	if (ro && mount(NULL, dst, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL))
		fail("remount %s read-only: %m", dst);
	int fd = open(dst_file, ro ? O_RDONLY : O_RDWR);
	if (fd < 0)
		fail("open %s: %m", dst_file);
	if (lseek(fd, 4, SEEK_SET) != 4)
		fail("lseek: %m");
	if (mnt_of(dst) == parent_mnt_of(dst) || info(fd, "").stx_mnt_id != mnt_of(dst))
		fail("the bind at %s is not a mount of its own before the dump", dst);

	test_ready();
	test_waitsig();

	/* The bind is a mount of its own, over the source's inode. */
	unsigned long long bind_mnt = mnt_of(dst);
	if (bind_mnt == parent_mnt_of(dst))
		fail("%s is no mount point any more", dst);
	struct statx d = info(AT_FDCWD, dst), s = info(AT_FDCWD, src);
	if (d.stx_ino != s.stx_ino)
		fail("%s (inode %llu) is not a bind of %s (inode %llu)", dst, (unsigned long long)d.stx_ino, src, (unsigned long long)s.stx_ino);
	/* The fd is on the bind's mount, where it was opened, at its offset. */
	if (info(fd, "").stx_mnt_id != bind_mnt)
		fail("the fd is on mount %llu, not on the bind's %llu", (unsigned long long)info(fd, "").stx_mnt_id, bind_mnt);
	char buf[256] = "";
	if (lseek(fd, 0, SEEK_CUR) != 4)
		fail("the fd's offset changed");
	if (pread(fd, buf, sizeof buf - 1, 0) != (ssize_t)strlen(pattern) || strcmp(buf, pattern))
		fail("read through the fd: %s", buf);
	memset(buf, 0, sizeof buf);
	int again = open(dst_file, O_RDONLY);
	if (again < 0 || read(again, buf, sizeof buf - 1) < 0 || strcmp(buf, pattern))
		fail("read %s by path: %s (%m)", dst_file, buf);
	close(again);
	struct statvfs vfs;
	if (statvfs(dst, &vfs))
		fail("statvfs %s: %m", dst);
	if (!!(vfs.f_flag & ST_RDONLY) != ro)
		fail("%s is %s", dst, ro ? "writable, not read-only" : "read-only");
	if (ro) {
		errno = 0;
		if (open(dst_file, O_WRONLY) >= 0 || errno != EROFS)
			fail("open %s for writing: %m, not EROFS", dst_file);
		int w = open(src_file, O_WRONLY);
		if (w < 0)
			fail("the source %s is not writable: %m", src_file);
		close(w);
	} else if (!file_mode) {
		char made[4300], seen[4300];
		snprintf(made, sizeof made, "%s/made-after", dst);
		snprintf(seen, sizeof seen, "%s/made-after", src);
		write_file(made, "x");
		if (access(seen, F_OK))
			fail("%s made through the bind is not in its source: %m", made);
	} else if (pwrite(fd, "B", 1, 0) != 1) {
		fail("write through the fd: %m");
	} else {
		memset(buf, 0, sizeof buf);
		int source = open(src_file, O_RDONLY);
		if (source < 0 || read(source, buf, 1) != 1 || buf[0] != 'B')
			fail("a write through the bound file is not in its source");
	}
	pass();
}
