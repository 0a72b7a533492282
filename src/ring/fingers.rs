//! The finger table: refreshed one finger per tick, and only ever used to speed lookups up.

use super::lookup::{Lookup, Purpose};
use super::{Node, Peer};
use crate::id::{BITS, Id};

/// Every this many fix-fingers ticks, the node looks its own successor up through the ring.
const SUCCESSOR_REFRESH_TICKS: u64 = 4;

impl Node {
    pub(super) fn fix_next_finger(&mut self) {
        if self.fixing_finger {
            return;
        }
        let succ = self.successors[0].clone();
        self.finger_ticks += 1;
        if self.finger_ticks.is_multiple_of(SUCCESSOR_REFRESH_TICKS) && succ.id != self.me.id {
            // Every few ticks, look up our own successor through the ring, starting at
            // our successor. Stabilize alone walks back one predecessor per round, which is slow
            // when a join (or a mass join) left us with a far successor; the lookup finds a
            // closer live member in O(log N) hops and stabilize then verifies and adopts it.
            let id = self.new_lookup_id();
            let target = self.me.id.add_pow2(0);
            self.lookups
                .insert(id, Lookup::from_bootstrap(target, Purpose::Successor));
            self.fixing_finger = true;
            self.send_step(id, succ.address, Some(succ.id), target);
            return;
        }
        // Fingers whose start lies in (me, successor] are the successor: no lookup needed.
        for _ in 0..BITS {
            let i = self.next_finger;
            let start = self.me.id.add_pow2(i);
            if succ.id != self.me.id && start.in_half_open(self.me.id, succ.id) {
                self.set_finger(i, Some(&succ));
                self.next_finger = (i + 1) % BITS;
                continue;
            }
            if succ.id == self.me.id {
                self.set_finger(i, None);
                self.next_finger = (i + 1) % BITS;
                continue;
            }
            let id = self.new_lookup_id();
            self.lookups
                .insert(id, Lookup::new(start, Purpose::Finger(i), self.me.id));
            self.fixing_finger = true;
            self.start_local(id);
            return;
        }
    }

    pub(super) fn finger_found(&mut self, i: usize, node: Peer) {
        if node.id == self.me.id {
            self.next_finger = (i + 1) % BITS;
            return;
        }
        let start = self.me.id.add_pow2(i);
        // The same node also succeeds every later finger start that lies in [start, node].
        let mut j = i;
        while j < BITS {
            let s = self.me.id.add_pow2(j);
            if j > i && !(s.in_half_open(start, node.id)) {
                break;
            }
            self.set_finger(j, Some(&node));
            j += 1;
        }
        self.next_finger = j % BITS;
    }

    pub(super) fn forget_finger(&mut self, id: Id) {
        for i in 0..self.fingers.len() {
            if self.fingers[i].as_ref().is_some_and(|p| p.id == id) {
                self.set_finger(i, None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::{Address, RingConfig};

    #[test]
    fn only_a_change_of_peer_or_address_counts_as_a_change_of_fingers() {
        let peer = |n: u128| Peer::new(Id::from_parts(0, n), Address::new(format!("p{n}")));
        let mut node = Node::new(peer(1), RingConfig::default());
        let at_start = node.fingers_changed();
        node.set_finger(3, Some(&peer(7)));
        assert_eq!(node.fingers_changed(), at_start + 1);
        node.set_finger(3, Some(&peer(7)));
        assert_eq!(node.fingers_changed(), at_start + 1, "the same peer again");
        // The same id at a new address (a peer restarted elsewhere): taken, and counted.
        let moved = Peer::new(Id::from_parts(0, 7), Address::new("p7-moved"));
        node.set_finger(3, Some(&moved));
        assert_eq!(node.fingers_changed(), at_start + 2);
        assert_eq!(node.fingers()[3].as_ref(), Some(&moved));
        node.forget_finger(Id::from_parts(0, 9));
        assert_eq!(node.fingers_changed(), at_start + 2, "nothing to forget");
        node.forget_finger(Id::from_parts(0, 7));
        assert_eq!(node.fingers_changed(), at_start + 3);
        assert!(node.fingers()[3].is_none());
    }
}
