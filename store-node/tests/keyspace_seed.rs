//! The keyspace hash is seeded at random per process: two nodes holding the same keys iterate
//! them in different orders, so no client can compute which keys collide (hash flooding).

mod common;

use redis::AsyncCommands;

#[tokio::test]
async fn two_nodes_order_the_same_keys_differently() {
    let mut orders = Vec::new();
    for _ in 0..2 {
        let node = common::node().await;
        let mut connection = common::client(&node).await;
        for index in 0..1000 {
            let _: () = connection.set(format!("key:{index}"), index).await.unwrap();
        }
        let (_, first_page): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(0)
            .arg("COUNT")
            .arg(20)
            .query_async(&mut connection)
            .await
            .unwrap();
        assert!(!first_page.is_empty());
        orders.push(first_page);
        node.shutdown().await.unwrap();
    }
    // With one seed both pages would be the same keys in the same order; with two random
    // seeds they coincide with negligible probability.
    assert_ne!(orders[0], orders[1]);
}
