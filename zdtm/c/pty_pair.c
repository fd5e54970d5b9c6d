/* pty_pair: a pty whose master the test holds and whose slave is the controlling
 * terminal of a child in a session of its own (its group in the foreground). The
 * slave has its own termios (no echo, no canonical mode, VMIN 1) and window size.
 * After restore: the same /dev/pts/N, termios and window size kept, the child's
 * controlling terminal and foreground group kept, and bytes flow both ways. */
#define _GNU_SOURCE
#include "tree_util.h"
#include <fcntl.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <termios.h>

static int master_fd = -1;
static char slave_path[64];

static int child(void *arg)
{
	if (setsid() < 0)
		CHILD_FAIL("setsid: %m");
	int slave = open(slave_path, O_RDWR);
	if (slave < 0)
		CHILD_FAIL("open %s: %m", slave_path);
	if (ioctl(slave, TIOCSCTTY, 0))
		CHILD_FAIL("TIOCSCTTY: %m");
	close(master_fd);
	child_ready();
	char buf[8];
	/* Blocks in read until the parent writes after the restore. */
	if (read(slave, buf, 5) != 5 || memcmp(buf, "ping\n", 5))
		CHILD_FAIL("read ping from the pty");
	if (tcgetpgrp(slave) != getpgrp() || tcgetsid(slave) != getsid(0))
		CHILD_FAIL("pty foreground %d session %d, expected %d %d", tcgetpgrp(slave), tcgetsid(slave), getpgrp(), getsid(0));
	int tty = open("/dev/tty", O_RDWR);
	if (tty < 0)
		CHILD_FAIL("no controlling terminal after restore: %m");
	close(tty);
	if (write(slave, "pong\n", 5) != 5)
		CHILD_FAIL("write pong: %m");
	return 0;
}

int main(int argc, char **argv)
{
	test_init("pty_pair", argc, argv);
	master_fd = posix_openpt(O_RDWR | O_NOCTTY);
	if (master_fd < 0 || grantpt(master_fd) || unlockpt(master_fd) || ptsname_r(master_fd, slave_path, sizeof(slave_path)))
		fail("posix_openpt: %m");
	int slave = open(slave_path, O_RDWR | O_NOCTTY);
	if (slave < 0)
		fail("open %s: %m", slave_path);
	struct termios t;
	tcgetattr(slave, &t);
	t.c_lflag &= ~(ECHO | ICANON);
	t.c_cc[VMIN] = 1;
	t.c_cc[VTIME] = 0;
	t.c_oflag &= ~OPOST;
	if (tcsetattr(slave, TCSANOW, &t))
		fail("tcsetattr: %m");
	struct winsize ws = { .ws_row = 37, .ws_col = 121 };
	if (ioctl(slave, TIOCSWINSZ, &ws))
		fail("TIOCSWINSZ: %m");
	pid_t kid = fork_child(child, NULL);
	test_ready();
	test_waitsig();

	char path[64];
	if (ptsname_r(master_fd, path, sizeof(path)) || strcmp(path, slave_path))
		fail("master now drives %s, was %s", path, slave_path);
	struct termios now;
	struct winsize ws_now;
	if (tcgetattr(slave, &now) || ioctl(slave, TIOCGWINSZ, &ws_now))
		fail("termios: %m");
	if ((now.c_lflag & (ECHO | ICANON)) || (now.c_oflag & OPOST) || now.c_cc[VMIN] != 1)
		fail("termios changed: lflag %#x oflag %#x vmin %d", now.c_lflag, now.c_oflag, now.c_cc[VMIN]);
	if (ws_now.ws_row != 37 || ws_now.ws_col != 121)
		fail("window %dx%d, was 37x121", ws_now.ws_row, ws_now.ws_col);
	if (write(master_fd, "ping\n", 5) != 5)
		fail("write ping: %m");
	char buf[8];
	if (read(master_fd, buf, 5) != 5 || memcmp(buf, "pong\n", 5))
		fail("no pong through the pty");
	if (reap_ok(kid))
		fail("child failed (see log)");
	pass();
}
