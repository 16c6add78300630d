"""backbone=lstm_dt: telemanom's / Orion's forecaster (two one-layer LSTMs of 80, dropout 0.3
after each, the next step) at its published sizes, dropout active only in training, and its
recipe reaching the trainer."""
import pytest
import torch

from madbench.errors import ConfigError
from madbench.models.lstm_dt import LSTMDT
from tests.conftest import compose_cfg


def test_architecture_at_the_published_sizes():
    m = LSTMDT(55, 1, 250)
    assert (m.lstm1.input_size, m.lstm1.hidden_size, m.lstm1.num_layers) == (55, 80, 1)
    assert (m.lstm2.input_size, m.lstm2.hidden_size, m.lstm2.num_layers) == (80, 80, 1)
    assert m.drop1.p == m.drop2.p == 0.3 and m.head.weight.shape == (1, 80)
    out = m.eval()(torch.randn(2, 250, 55))
    assert out.forecast.shape == (2, 1, 1) and out.embedding.shape == (2, 250, 80)
    # the forecast reads the second LSTM's last step
    torch.testing.assert_close(out.forecast[:, 0], m.head(out.embedding[:, -1]))


def test_dropout_follows_each_lstm_in_training_only():
    torch.manual_seed(0)
    m = LSTMDT(3, 1, 10, hidden1=8, hidden2=8, dropout=0.5)
    x = torch.randn(4, 10, 3)
    m.train()
    a, b = m(x).forecast, m(x).forecast
    assert not torch.equal(a, b)
    m.eval()
    torch.testing.assert_close(m(x).forecast, m(x).forecast)


def test_recipe_reaches_the_trainer():
    cfg = compose_cfg(["backbone=lstm_dt"], tiny=False)
    t = cfg.trainer
    assert (t.epochs, t.batch_size, t.patience, t.min_delta, t.val_ratio, t.optimizer.lr) == (35, 64, 10, 3e-4, 0.2,
                                                                                            1e-3)
    assert cfg.objective.name == "forecast"


def test_bad_sizes_are_one_line():
    with pytest.raises(ConfigError, match=r"backbone.model.dropout=1.0; expected a probability"):
        LSTMDT(3, 1, 10, dropout=1.0)
