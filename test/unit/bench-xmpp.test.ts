/**
 * The bench's XMPP client mode (bench/loadgen/xmpp.ts) classifies ejabberd's frames with regexes:
 * check it on frames as ejabberd 23.01 sends them (captured from a real session), so a parser
 * slip shows up here and not as "0 deliveries" in a bench report. No server needed.
 */
import { describe, expect, it } from 'vitest';
import { parseXmpp, xmppA, xmppAuthPlain, xmppMessage } from '../../bench/loadgen/xmpp.ts';

describe('bench xmpp classifier', () => {
  it('reads the login sequence', () => {
    expect(parseXmpp(`<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' id='37' version='1.0' xml:lang='en' from='localhost'/>`)).toEqual({ kind: 'open' });
    expect(
      parseXmpp(
        `<stream:features xmlns:stream='http://etherx.jabber.org/streams'><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>DIGEST-MD5</mechanism><mechanism>PLAIN</mechanism><mechanism>SCRAM-SHA-1</mechanism></mechanisms></stream:features>`,
      ),
    ).toEqual({ kind: 'features', mechanisms: true, bind: false, sm: false });
    expect(parseXmpp(`<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>`)).toEqual({ kind: 'success' });
    expect(parseXmpp(`<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/><text xml:lang='en'>Invalid username or password</text></failure>`)).toEqual({ kind: 'failure', reason: 'not-authorized' });
    expect(
      parseXmpp(
        `<stream:features xmlns:stream='http://etherx.jabber.org/streams'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/><session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session><sm xmlns='urn:xmpp:sm:2'/><sm xmlns='urn:xmpp:sm:3'/></stream:features>`,
      ),
    ).toEqual({ kind: 'features', mechanisms: false, bind: true, sm: true });
    expect(parseXmpp(`<iq xmlns='jabber:client' type='result' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>u2@localhost/bench</jid></bind></iq>`)).toEqual({ kind: 'iq', id: 'bind', type: 'result' });
    expect(parseXmpp(`<enabled xmlns='urn:xmpp:sm:3'/>`)).toEqual({ kind: 'enabled' });
    expect(parseXmpp(`<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>`)).toEqual({ kind: 'stream_error', reason: 'conflict' });
  });

  it('reads deliveries, acks and ack requests', () => {
    const ts = 1764602691234.5678;
    const sent = xmppMessage('u2@localhost', 'w0-7', ts, 'xxxx');
    // ejabberd relays the body unchanged, with its own attribute quoting and order.
    const relayed = `<message xmlns='jabber:client' xml:lang='en' to='u2@localhost' from='u1@localhost/bench' type='chat' id='w0-7'>${sent.slice(sent.indexOf('<body>'))}`;
    expect(parseXmpp(relayed)).toEqual({ kind: 'message', ts, error: false });
    expect(parseXmpp(`<message xmlns='jabber:client' type='error' id='w0-8' from='u9@localhost'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>`)).toEqual({ kind: 'message', ts: null, error: true });
    expect(parseXmpp(`<a h='42' xmlns='urn:xmpp:sm:3'/>`)).toEqual({ kind: 'a', h: 42 });
    expect(parseXmpp(`<r xmlns='urn:xmpp:sm:3'/>`)).toEqual({ kind: 'r' });
    expect(parseXmpp(`<presence xmlns='jabber:client' xml:lang='en' to='u2@localhost/bench' from='u2@localhost/bench'/>`)).toEqual({ kind: 'presence' });
  });

  it('writes what the server reads', () => {
    expect(xmppA(7)).toBe('<a xmlns="urn:xmpp:sm:3" h="7"/>');
    const auth = xmppAuthPlain('pa0a', 'pw');
    const b64 = /mechanism="PLAIN">([^<]+)</.exec(auth)?.[1] ?? '';
    expect(Buffer.from(b64, 'base64').toString()).toBe('\0pa0a\0pw');
  });
});
