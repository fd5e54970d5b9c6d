/* scm_fds.h: what the SCM_RIGHTS tests share: sending a message with fds and receiving
 * one whose text and fd count must be the expected ones. */
#ifndef SCM_FDS_H
#define SCM_FDS_H

#include "zdtmtst.h"
#include <string.h>
#include <sys/socket.h>

/* Sends one message `text` with `count` (at most 4) fds. */
static inline void send_fds(int sock, const char *text, const int *fds, int count)
{
	char control[CMSG_SPACE(sizeof(int) * 4)];
	struct iovec iov = { (void *)text, strlen(text) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (count) {
		memset(control, 0, sizeof(control));
		msg.msg_control = control;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * count);
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * count);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * count);
	}
	if (sendmsg(sock, &msg, 0) != (ssize_t)strlen(text))
		fail("sendmsg %s: %m", text);
}

/* Receives one message: its text must be `text`, with `count` fds into `fds`. */
static inline void recv_fds(int sock, const char *text, int *fds, int count)
{
	char control[CMSG_SPACE(sizeof(int) * 4)], buf[64];
	struct iovec iov = { buf, strlen(text) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof(control) };
	ssize_t n = recvmsg(sock, &msg, MSG_DONTWAIT);
	if (n != (ssize_t)strlen(text) || memcmp(buf, text, n))
		fail("message %s: got %zd bytes", text, n);
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	int got = c && c->cmsg_type == SCM_RIGHTS ? (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int)) : 0;
	if (got != count)
		fail("message %s: %d fds, expected %d", text, got, count);
	if (count)
		memcpy(fds, CMSG_DATA(c), sizeof(int) * count);
}

#endif
