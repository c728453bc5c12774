"""A download read to its end stops counting as a transfer in progress.

The daemon keeps a finished download for a while so that a client whose
last reply was lost can ask for the last chunk again, but it holds no open
stream and must not fill the daemon's table of transfers: before this was
fixed, 256 values read to the end by a few clients made every upload fail
with "too many transfers in progress" for the next two minutes.
"""

from encore_client import RemoteStore
from encore_client.wire.limits import INLINE_LIMIT
from encored.stores.transfers import MAX_STREAMS_PER_CLIENT, MAX_TRANSFERS, MIN_CHUNK

VALUE = bytes(range(256)) * (3 * MIN_CHUNK // 256)  # three chunks of MIN_CHUNK


def test_values_read_to_the_end_leave_room_for_uploads(own_daemon):
    own_daemon('[stores.mem]\ntype = "memory"\n')
    runtime = own_daemon.base / "rt"
    writer = RemoteStore("mem", runtime)
    writer.set_data("v", VALUE)
    clients = MAX_TRANSFERS // MAX_STREAMS_PER_CLIENT + 1
    readers = [
        RemoteStore("mem", runtime, chunk_size=MIN_CHUNK) for _ in range(clients)
    ]
    try:
        for reader in readers:
            for _ in range(MAX_STREAMS_PER_CLIENT):
                stream = reader.get_data("v")
                assert stream.read() == VALUE
                # Read to the end, the client has nothing more to tell.
                stream.close()
        # A value over the inline limit is uploaded: a transfer of its own.
        big = bytes(INLINE_LIMIT + MIN_CHUNK)
        writer.set_data("after", big)
        assert writer.get_data("after").read() == big
    finally:
        for reader in readers:
            reader.disconnect()
        writer.disconnect()


def test_a_finished_download_still_answers_a_repeated_last_read(own_daemon):
    own_daemon('[stores.mem]\ntype = "memory"\n')
    store = RemoteStore("mem", own_daemon.base / "rt", chunk_size=MIN_CHUNK)
    try:
        store.set_data("v", VALUE)
        reply = store._call("store.get", {"key": "v", "chunk": MIN_CHUNK})
        stream, offset = reply.result["stream"], len(reply.frames[0])
        chunks = []
        while True:
            args = {"stream": stream, "offset": offset, "size": MIN_CHUNK}
            reply = store._call("store.read", args, with_store=False)
            chunks.append(reply.frames[0])
            if reply.result["eof"]:
                break
            offset += len(reply.frames[0])
        # The reply to the last read was "lost": the client asks again.
        args = {"stream": stream, "offset": offset, "size": MIN_CHUNK}
        again = store._call("store.read", args, with_store=False)
        assert again.frames[0] == chunks[-1]
        assert again.result["eof"] is True
    finally:
        store.disconnect()
