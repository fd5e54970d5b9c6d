/* A process in a network namespace of its own, serving on the namespace's addresses.
 * argv: IPV4 IPV6 PORT. Unshares its network namespace, says "ready PID" on stdout,
 * waits for "go" on stdin (the test builds the namespace meanwhile), binds a TCP
 * listener to IPV4:PORT and a UDP socket to [IPV6]:PORT, says "bound", puts /dev/null
 * on its stdio and serves: each TCP connection and each datagram gets
 * "TOKEN PID COUNT\n", TOKEN drawn once at start, COUNT counting replies from 0. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

static void die(const char *what) { perror(what); exit(1); }

int main(int argc, char **argv)
{
	if (argc != 4) { fprintf(stderr, "usage: netns IPV4 IPV6 PORT\n"); return 2; }
	int port = atoi(argv[3]);
	unsigned int token;
	if (getrandom(&token, sizeof(token), 0) != sizeof(token)) die("getrandom");
	setsid();
	if (unshare(CLONE_NEWNET)) die("unshare");
	printf("ready %d\n", getpid());
	fflush(stdout);
	char line[16];
	if (!fgets(line, sizeof(line), stdin) || strcmp(line, "go\n")) die("go");

	int tcp = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a4 = { .sin_family = AF_INET, .sin_port = htons(port) };
	if (inet_pton(AF_INET, argv[1], &a4.sin_addr) != 1) die("inet_pton 4");
	if (bind(tcp, (struct sockaddr *)&a4, sizeof(a4)) || listen(tcp, 8)) die("bind tcp");
	int udp = socket(AF_INET6, SOCK_DGRAM, 0);
	struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_port = htons(port) };
	if (inet_pton(AF_INET6, argv[2], &a6.sin6_addr) != 1) die("inet_pton 6");
	if (bind(udp, (struct sockaddr *)&a6, sizeof(a6))) die("bind udp");
	printf("bound\n");
	fflush(stdout);
	int null = open("/dev/null", O_RDWR);
	dup2(null, 0);
	dup2(null, 1);
	close(null);

	unsigned long count = 0;
	for (;;) {
		struct pollfd fds[2] = { { .fd = tcp, .events = POLLIN }, { .fd = udp, .events = POLLIN } };
		if (poll(fds, 2, -1) < 0)
			continue;
		char reply[64];
		if (fds[0].revents & POLLIN) {
			int c = accept(tcp, NULL, NULL);
			if (c < 0)
				continue;
			int n = snprintf(reply, sizeof(reply), "%08x %d %lu\n", token, getpid(), count++);
			if (write(c, reply, n) != n) {}
			close(c);
		}
		if (fds[1].revents & POLLIN) {
			struct sockaddr_in6 from;
			socklen_t len = sizeof(from);
			char buf[64];
			if (recvfrom(udp, buf, sizeof(buf), 0, (struct sockaddr *)&from, &len) < 0)
				continue;
			int n = snprintf(reply, sizeof(reply), "%08x %d %lu\n", token, getpid(), count++);
			sendto(udp, reply, n, 0, (struct sockaddr *)&from, len);
		}
	}
}
