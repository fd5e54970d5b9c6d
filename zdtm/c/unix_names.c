/* unix_names: unix sockets whose names are not plain absolute paths at dump time:
 *   a stream listener bound to a relative path (in the working directory),
 *   a datagram socket bound to a relative path, with a datagram queued from a client
 *     that connected to it by that relative name,
 *   a stream listener bound to an absolute path whose socket file was then unlinked,
 *   a datagram socket bound in a directory that was then removed (file and directory),
 *     with a datagram queued.
 * The relative datagram socket's file has a mode of its own.
 * After restore every socket has its name (getsockname) and that file its mode, the
 * relative ones are still in the working directory and take a new connection or
 * datagram through it; the unlinked
 * names and the removed directory are still gone; the listener whose file is gone still
 * listens; the queued datagrams read back and the client still sends to its server. */
#define _GNU_SOURCE
#include "zdtmtst.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

struct named {
	int fd;
	const char *what;
	struct sockaddr_un name;
	socklen_t len;
};

static struct named socks[8];
static int nsocks;

static int bound(int type, const char *what, const char *path)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
	int fd = socket(AF_UNIX, type, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)))
		fail("%s: bind %s: %m", what, path);
	struct named *n = &socks[nsocks++];
	*n = (struct named){ .fd = fd, .what = what, .len = sizeof(n->name) };
	if (getsockname(fd, (struct sockaddr *)&n->name, &n->len))
		fail("%s: getsockname: %m", what);
	return fd;
}

static int connected(int type, const char *path)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
	int fd = socket(AF_UNIX, type, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)))
		fail("connect %s: %m", path);
	return fd;
}

static void sendtext(int fd, const char *text)
{
	if (send(fd, text, strlen(text), MSG_DONTWAIT) != (ssize_t)strlen(text))
		fail("send %s: %m", text);
}

static void expect(int fd, const char *text, const char *what)
{
	char buf[128];
	ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
	if (n != (ssize_t)strlen(text) || memcmp(buf, text, n))
		fail("%s: got %zd bytes, not %s (%m)", what, n, text);
}

static void gone(const char *path)
{
	struct stat st;
	if (lstat(path, &st) == 0 || errno != ENOENT)
		fail("%s is back after restore", path);
}

int main(int argc, char **argv)
{
	test_init("unix_names", argc, argv);
	uint64_t r = test_rand64();
	char dir[4096], unlinked[4096], removed_dir[4096], removed[4096];
	test_path(dir, sizeof(dir), "");
	if (chdir(dir))
		fail("chdir %s: %m", dir);
	/* Absolute names must fit sun_path: keep them short. */
	snprintf(unlinked, sizeof(unlinked), "/tmp/crust-un-%016llx.sock", (unsigned long long)r);
	snprintf(removed_dir, sizeof(removed_dir), "/tmp/crust-rm-%016llx", (unsigned long long)r);
	snprintf(removed, sizeof(removed), "%s/d.sock", removed_dir);
	unlink("rel-listen.sock");
	unlink("rel-dgram.sock");
	char first[40], second[40], third[40];
	snprintf(first, sizeof(first), "first-%016llx", (unsigned long long)r);
	snprintf(second, sizeof(second), "second-%llx", (unsigned long long)(r >> 4));
	snprintf(third, sizeof(third), "third-%llx", (unsigned long long)(r >> 8));

	int rel_listener = bound(SOCK_STREAM, "listener bound to a relative path", "rel-listen.sock");
	if (listen(rel_listener, 4))
		fail("listen: %m");
	int rel_dgram = bound(SOCK_DGRAM, "datagram socket bound to a relative path", "rel-dgram.sock");
	mode_t mode = 0600 | (mode_t)(r % 8) << 3;
	if (chmod("rel-dgram.sock", mode))
		fail("chmod: %m");
	int client = connected(SOCK_DGRAM, "rel-dgram.sock");
	sendtext(client, first);

	int unlinked_listener = bound(SOCK_STREAM, "listener whose file was unlinked", unlinked);
	if (listen(unlinked_listener, 4) || unlink(unlinked))
		fail("listen/unlink: %m");

	if (mkdir(removed_dir, 0700))
		fail("mkdir %s: %m", removed_dir);
	int removed_dgram = bound(SOCK_DGRAM, "datagram socket in a removed directory", removed);
	int sender = socket(AF_UNIX, SOCK_DGRAM, 0);
	struct sockaddr_un to = { .sun_family = AF_UNIX };
	snprintf(to.sun_path, sizeof(to.sun_path), "%s", removed);
	if (sendto(sender, second, strlen(second), 0, (struct sockaddr *)&to, sizeof(to)) != (ssize_t)strlen(second))
		fail("sendto %s: %m", removed);
	close(sender);
	if (unlink(removed) || rmdir(removed_dir))
		fail("remove %s: %m", removed_dir);

	test_ready();
	test_waitsig();

	for (int i = 0; i < nsocks; i++) {
		struct named *n = &socks[i];
		struct sockaddr_un name;
		socklen_t len = sizeof(name);
		if (getsockname(n->fd, (struct sockaddr *)&name, &len))
			fail("%s: getsockname: %m", n->what);
		if (len != n->len || memcmp(&name, &n->name, len))
			fail("%s: named %.*s after restore, was %.*s", n->what, (int)(len - 2), name.sun_path, (int)(n->len - 2), n->name.sun_path);
	}
	struct stat st;
	if (stat("rel-dgram.sock", &st) || (st.st_mode & 07777) != mode)
		fail("rel-dgram.sock: mode %o after restore, was %o (%m)", st.st_mode & 07777, mode);
	gone(unlinked);
	gone(removed_dir);
	int listening = 0;
	socklen_t optlen = sizeof(listening);
	if (getsockopt(unlinked_listener, SOL_SOCKET, SO_ACCEPTCONN, &listening, &optlen) || !listening)
		fail("the listener whose file was unlinked no longer listens");
	expect(rel_dgram, first, "datagram queued on the relatively named socket");
	expect(removed_dgram, second, "datagram queued on the socket in the removed directory");
	sendtext(client, third);
	expect(rel_dgram, third, "client of the relatively named socket");
	int late = connected(SOCK_DGRAM, "rel-dgram.sock");
	sendtext(late, second);
	expect(rel_dgram, second, "new client by the relative name");
	int stream = connected(SOCK_STREAM, "rel-listen.sock");
	int accepted = accept(rel_listener, NULL, NULL);
	if (accepted < 0)
		fail("accept on the relatively named listener: %m");
	sendtext(stream, first);
	expect(accepted, first, "connection to the relatively named listener");
	pass();
}
