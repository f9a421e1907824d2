"""Who a pilgrim is, kept apart from the events: the encrypted vault and the spelling keys names are found by."""
