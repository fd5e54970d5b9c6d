/* opath_symlink: an fd opened O_PATH|O_NOFOLLOW on a symlink refers to the symlink itself
 * after restore (S_IFLNK, same inode, readlinkat gives the target), next to an O_PATH fd
 * opened through the same symlink, which refers to the file it points at. */
#define _GNU_SOURCE
#include "zdtmtst.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	test_init("opath_symlink", argc, argv);
	char target[4096], link[4096];
	test_path(target, sizeof(target), "opath_symlink.target");
	test_path(link, sizeof(link), "opath_symlink.link");
	unlink(link);
	int made = open(target, O_CREAT | O_WRONLY | O_TRUNC, 0600);
	if (made < 0 || close(made))
		fail("create %s", target);
	if (symlink(target, link))
		fail("symlink %s", link);
	int lfd = open(link, O_PATH | O_NOFOLLOW);
	int tfd = open(link, O_PATH);
	if (lfd < 0 || tfd < 0)
		fail("open O_PATH %s", link);
	struct stat lst, tst;
	if (fstatat(lfd, "", &lst, AT_EMPTY_PATH) || fstatat(tfd, "", &tst, AT_EMPTY_PATH))
		fail("fstatat before");
	if (!S_ISLNK(lst.st_mode) || !S_ISREG(tst.st_mode))
		fail("modes %o %o before", lst.st_mode, tst.st_mode);
	int lflags = fcntl(lfd, F_GETFL), tflags = fcntl(tfd, F_GETFL);

	test_ready();
	test_waitsig();

	struct stat lafter, tafter;
	if (fstatat(lfd, "", &lafter, AT_EMPTY_PATH) || fstatat(tfd, "", &tafter, AT_EMPTY_PATH))
		fail("fstatat after");
	if (!S_ISLNK(lafter.st_mode))
		fail("O_PATH|O_NOFOLLOW fd has mode %o, not a symlink", lafter.st_mode);
	if (lafter.st_ino != lst.st_ino || lafter.st_dev != lst.st_dev)
		fail("symlink fd inode %lu, was %lu", (unsigned long)lafter.st_ino, (unsigned long)lst.st_ino);
	if (!S_ISREG(tafter.st_mode) || tafter.st_ino != tst.st_ino)
		fail("followed O_PATH fd: mode %o inode %lu, was %lu", tafter.st_mode, (unsigned long)tafter.st_ino, (unsigned long)tst.st_ino);
	char got[4096];
	ssize_t n = readlinkat(lfd, "", got, sizeof(got) - 1);
	if (n < 0)
		fail("readlinkat on the symlink fd");
	got[n] = 0;
	if (strcmp(got, target))
		fail("symlink fd reads %s, not %s", got, target);
	if (fcntl(lfd, F_GETFL) != lflags || fcntl(tfd, F_GETFL) != tflags)
		fail("flags %#x %#x, were %#x %#x", fcntl(lfd, F_GETFL), fcntl(tfd, F_GETFL), lflags, tflags);
	pass();
}
